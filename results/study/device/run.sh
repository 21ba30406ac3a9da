# usage: bash .dev/run.sh JOBS PARALLEL DEADLINE_S
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl || exit 1
export PYTHONPATH=$PWD/.dev/stub:/tmp/site:$PWD OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= PYTHONUNBUFFERED=1
nproc --all; python3 -c "import torch, gymnasium; print(torch.__version__, gymnasium.__version__)"
mkdir -p runs/dev
timeout $3 xargs -P $2 -L 1 bash -c 'python3 .dev/gtrain.py "$0" "$@" > runs/dev/$0.log 2>&1; tail -c 300 runs/dev/$0.log | tr "\r" "\n" | tail -2' < $1
ls runs/dev/*/slim.pt | wc -l
