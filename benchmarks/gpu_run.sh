#!/usr/bin/env bash
# The last call of a GPU run on the lent H200 (../shared/device/README.md has the machine's facts).
# It joins the onnxruntime-gpu wheel parts that the earlier calls copied to /tmp/chunks, installs the
# wheel (and scipy, if carried: only a pot threshold needs it there) into /tmp/site, then runs
# benchmarks/embed_gpu.py on the model directories carried under .gpu/models.
#
# Here, once:
#   ../shared/device/prepare-ort-gpu.sh                        # the wheel in parts, .gpu/p1 .. .gpu/pN
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .gpu/scipy scipy==<the version in constraints.txt>
#   cp -r MODEL .gpu/models/ecg && seqae export .gpu/models/ecg --fp16   # and any other shape
# There, calls in quick succession (the machine goes back after about 30 s idle):
#   carry [".gpu/p1"]:     mkdir -p /tmp/chunks && cp .gpu/p1/chunk.* /tmp/chunks/
#   carry [".gpu/pK"]:     cp .gpu/pK/chunk.* /tmp/chunks/            (each middle part)
#   carry [".gpu/scipy"]:  mkdir -p /tmp/whl && cp .gpu/scipy/*.whl /tmp/whl/   (only for a pot threshold)
#   carry [".gpu/pN", ".gpu/models"]:  bash benchmarks/gpu_run.sh [embed_gpu.py options]
# The JSON comes back as $OUT/gpu.json; commit it as bench/results/gpu-<date>.json.
set -u
last=$(ls -d .gpu/p* | sort -V | tail -1)
cp "$last"/chunk.* /tmp/chunks/
wheel=$(cat "$last/WHEEL")
cat /tmp/chunks/chunk.* > "/tmp/$wheel"
# scipy only for a model whose threshold.json uses pot; without /tmp/whl, onnxruntime-gpu alone
python3 -m pip install -q --no-index --no-deps --target /tmp/site "/tmp/$wheel" $(ls /tmp/whl/*.whl 2>/dev/null) 2>&1 | tail -3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import numpy, pyarrow, onnxruntime as o; print(numpy.__version__, pyarrow.__version__, o.__version__)"
models=$(ls -d .gpu/models/*/)
# onnxruntime's node-placement warnings (shape ops on the CPU, by design) would fill the output tail
timeout 400 python3 benchmarks/embed_gpu.py $models "$@" 2>&1 | grep -v '^{\|VerifyEachNodeIsAssignedToAnEp' | cut -c1-400
