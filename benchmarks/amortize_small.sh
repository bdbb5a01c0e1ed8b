#!/bin/bash
# Small amortization experiment (issue 13): tanh CNN and MLP zoos, ScaleGMN-B vs GMN-B (2 seeds), SGD/Adam 1/5/25 epochs,
# then lam=1e-3. 1 torch thread; about 15 min on a 2-core CPU. Usage: PYTHON=.venv/bin/python bash benchmarks/amortize_small.sh
# Results: $R/eval-{cnn,mlp}{,-l1}/results.md, results.json, accuracy_boxplot.png; wall times in $R/times.txt.
set -e
cd "$(dirname "$0")/.."
PY="${PYTHON:-python} -m scalegmn_ext.cli"
export PYTHONPATH=$PWD
R=${R:-runs/amortize-exp}
mkdir -p "$R"
t() { local s=$EPOCHREALTIME; "$@"; echo "$(awk "BEGIN{print $EPOCHREALTIME - $s}") s: ${*:3}" >> "$R/times.txt"; }
# zoos: tanh CNNs and tanh MLPs (7x7-pooled inputs, 16-16 hidden) on Fashion-MNIST, early checkpoints 1, 2
t $PY zoo cnn --n 160 --out $R/zoo-cnn --activations tanh --epochs 2 --train-size 1500 --test-size 1000 --chunk 40 --threads 1 --workers 1 --quiet
t $PY zoo mlp --n 160 --out $R/zoo-mlp --activations tanh --epochs 2 --train-size 1500 --test-size 1000 --image-size 7 --hidden 16,16 --chunk 40 --threads 1 --workers 1 --quiet
TR="--steps 300 --batch-size 8 --images 128 --lr 3e-3 --d-hid 16 --layers 2 --out-scale 0.1 --threads 1 --quiet"
for kind in cnn mlp; do
  for seed in 0 1; do
    t $PY amortize train --zoo $R/zoo-$kind --out $R/$kind-sym-s$seed --seed $seed $TR --resume
    t $PY amortize train --zoo $R/zoo-$kind --out $R/$kind-broken-s$seed --seed $seed --broken $TR --resume
  done
  t $PY amortize eval --zoo $R/zoo-$kind --runs $R/$kind-sym-s0 $R/$kind-sym-s1 $R/$kind-broken-s0 $R/$kind-broken-s1 \
    --out $R/eval-$kind --sgd-epochs 1,5,25 --adam-epochs 1,5,25 --threads 1 --quiet
done
# lam > 0 (sparsifying) variant, seed 0 only, short fine-tuning budgets.
TR="$TR --lam 1e-3"
for kind in mlp cnn; do
  t $PY amortize train --zoo $R/zoo-$kind --out $R/$kind-sym-l1-s0 --seed 0 $TR --resume
  t $PY amortize eval --zoo $R/zoo-$kind --runs $R/$kind-sym-l1-s0 --out $R/eval-$kind-l1 --sgd-epochs 1,5 --adam-epochs 1,5 --threads 1 --quiet
done
