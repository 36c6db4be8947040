"""Training-stage helpers shared by the trainer plugins (``dpo``, ``sft``) and the ``train`` stage.

* :mod:`.data` -- pairs and SFT samples, unreadable videos skipped and counted;
* :mod:`.context` -- :class:`TrainStageContext`, what a trainer gets for one stage;
* :mod:`.options` -- global batch arithmetic, precision, TRL config with pass-through ``args``;
* :mod:`.runner` -- resume from checkpoint, save the adapter, merge, save the merged model;
* :mod:`.metrics` -- ``metrics.jsonl`` and the progress bar; :mod:`.curves` -- the plots;
* :mod:`.video_dpo` / :mod:`.video_sft` -- the TRL trainers with video batches (import TRL:
  only the trainer plugins' ``train`` imports them).
"""
