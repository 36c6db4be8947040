#!/usr/bin/env bash
# The checks that need torchvision, in a second environment: lmms-eval 0.7.3 + torchvision +
# temple (editable), built from scratch in .venv-lmms (or $TEMPLE_LMMS_VENV), then, from
# temple's own environment (.venv, or the active one):
#   * tests/evaluation/test_lmms_bridge.py -- lmms-eval scores two local tasks on a tiny merged
#     checkpoint through temple's model class (--model temple), and temple collects the scores;
#   * tests/backends/test_processor_files.py -- transformers' AutoProcessor loads merged folders;
#   * tests/generation/test_release_captioning.py -- a clip's keyframes through the release's
#     qwen-vl-utils 0.0.11 + processor give temple's captioner's video tensors.
# and, in the torchvision environment itself (it has temple and pytest installed):
#   * the backends against transformers' own processors (Qwen2-VL, Qwen2.5-VL, MiMo-VL, Qwen3-VL,
#     InternVL: the same input_ids and visual tensors) -- tests that skip where torchvision is
#     missing, i.e. always in temple's own environment.
# .ci/run calls it after the main suite. Measured on the 2-core CI machine: building the
# environment takes ~6 min with an empty pip cache (~1.5 min warm; 7 GB: torch's CUDA wheels),
# the tests ~2.5 min.
#   bash scripts/lmms_eval_bridge.sh            # build (if missing) and test
#   TEMPLE_LMMS_REBUILD=1 bash scripts/lmms_eval_bridge.sh
#   TEMPLE_LMMS_BUILD_ONLY=1 bash scripts/lmms_eval_bridge.sh   # build (if missing) and stop
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
VENV="${TEMPLE_LMMS_VENV:-.venv-lmms}"
PYTHON="${TEMPLE_PYTHON:-$(command -v python)}"
started=$(date +%s)
if [ -n "${TEMPLE_LMMS_REBUILD:-}" ] || [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import lmms_eval, torchvision, temple_core, pytest, hypothesis" 2>/dev/null || [ ! -d "$VENV/qwen-vl-utils-0.0.11/qwen_vl_utils" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c scripts/lmms-constraints.txt torch torchvision
  "$VENV/bin/python" -m pip install -q -c scripts/lmms-constraints.txt lmms-eval
  # The release's qwen-vl-utils (0.0.11: the last before Qwen3-VL's 0.0.13; the release pins
  # transformers 4.53.2) beside lmms-eval's own >= 0.0.14, in a folder of its own that
  # tests/testkit/release_clip_check.py puts first on its path.
  "$VENV/bin/python" -m pip install -q --no-deps --target "$VENV/qwen-vl-utils-0.0.11" qwen-vl-utils==0.0.11
  "$VENV/bin/python" -m pip install -q -c scripts/lmms-constraints.txt -e '.[dev]'
  echo "lmms-bridge: built $VENV in $(( $(date +%s) - started )) s"
fi
if [ -n "${TEMPLE_LMMS_BUILD_ONLY:-}" ]; then
  exit 0  # .ci/run builds it beside the main suite, then calls this again for the tests
fi
"$VENV/bin/python" -c "import torch, torchvision, lmms_eval, importlib.metadata as m; print('lmms-bridge: torch', torch.__version__, 'torchvision', torchvision.__version__, 'lmms-eval', m.version('lmms_eval'))"
LMMS_PYTHON="$(cd "$VENV" && pwd)/bin/python"
TEMPLE_LMMS_PYTHON="$LMMS_PYTHON" TEMPLE_TORCHVISION_PYTHON="$LMMS_PYTHON" \
  "$PYTHON" -m pytest tests/evaluation/test_lmms_bridge.py tests/backends/test_processor_files.py tests/generation/test_release_captioning.py \
  -q -k "lmms_eval_scores or autoprocessor or release_qwen_vl_utils_and_processor"
"$LMMS_PYTHON" -m pytest tests/backends/test_qwen_vl.py tests/backends/test_qwen3_vl.py tests/backends/test_internvl.py \
  -q -p no:cacheprovider -k "transformers_processor"
echo "lmms-bridge: done in $(( $(date +%s) - started )) s"
