#!/bin/bash
# One-shot amortized optimization vs learning-rate-tuned SGD/Adam (issue 13). 1 torch thread, every command sequential;
# about 37 min on a shared 2-core CPU (times.txt). Usage: PYTHON=.venv/bin/python bash benchmarks/amortize_one_shot.sh
#   tanh MLP zoo (640 networks, 7x7-pooled Fashion-MNIST, 16-16 hidden) and tanh CNN zoo (320 Small-CNN-Zoo CNNs),
#   checkpoints of epochs 1 and 2 (early: room to improve); ScaleGMN-B vs GMN-B (same model, canonicalisation off),
#   both with layer-normalised input, 3 seeds each; lam = 1e-3 (sparsifying) on the MLPs, seed 0.
# Results ($R): eval-<kind>-oneshot/ (every held-out network, one-shot only: the sym-vs-broken comparison),
#   eval-<kind>/ (one-shot vs SGD/Adam up to 150 epochs with lr tuned on validation networks; CNN: 16 networks),
#   eval-mlp-l1/, eval-<kind>-nonorm/ (ablation: no input normalisation), eval-relu{,-oneshot}/ (ReLU CNNs);
#   each with results.md, results.json, accuracy_boxplot.png. Wall time of every command: $R/times.txt.
set -e
cd "$(dirname "$0")/.."
PY="${PYTHON:-python} -m scalegmn_ext.cli"
export PYTHONPATH=$PWD
R=${R:-runs/amortize-one-shot}
mkdir -p "$R"
t() { local s=$EPOCHREALTIME; "$@"; echo "$(awk "BEGIN{print $EPOCHREALTIME - $s}") s: ${*:3}" >> "$R/times.txt"; }
Z="--activations tanh --epochs 2 --train-size 1500 --test-size 1000 --threads 1 --workers 1 --quiet"
t $PY zoo mlp --n 640 --out $R/zoo-mlp $Z --image-size 7 --hidden 16,16 --chunk 80
t $PY zoo cnn --n 320 --out $R/zoo-cnn $Z --chunk 40
TR="--batch-size 8 --images 128 --lr 3e-3 --d-hid 16 --layers 2 --out-scale 1 --input-norm layer --threads 1 --quiet --resume"
declare -A STEPS=([mlp]=600 [cnn]=300)
for kind in mlp cnn; do
  runs=()
  for seed in 0 1 2; do
    for v in sym broken; do
      flag=$([ $v = broken ] && echo --broken || true)
      t $PY amortize train --zoo $R/zoo-$kind --out $R/$kind-$v-s$seed --seed $seed --steps ${STEPS[$kind]} $flag $TR
      runs+=($R/$kind-$v-s$seed)
    done
  done
  t $PY amortize eval --zoo $R/zoo-$kind --runs "${runs[@]}" --out $R/eval-$kind-oneshot --sgd-epochs none --adam-epochs none \
    --threads 1 --quiet
done
# Baselines. An epoch = one pass over the 1500-image pool in batches of 64; lr constant, tuned per optimizer.
t $PY amortize eval --zoo $R/zoo-mlp --runs $R/mlp-sym-s0 $R/mlp-sym-s1 $R/mlp-sym-s2 $R/mlp-broken-s0 $R/mlp-broken-s1 \
  $R/mlp-broken-s2 --out $R/eval-mlp --sgd-epochs 1,5,25,150 --adam-epochs 1,5,25,150 --tune-lr --tune-networks 8 \
  --threads 1 --quiet
t $PY amortize eval --zoo $R/zoo-cnn --runs $R/cnn-sym-s0 $R/cnn-sym-s1 $R/cnn-sym-s2 $R/cnn-broken-s0 $R/cnn-broken-s1 \
  $R/cnn-broken-s2 --out $R/eval-cnn --max-test 16 --sgd-epochs 1,5,25,150 --adam-epochs 1,5,25 --tune-lr \
  --tune-networks 4 --tune-epochs 25 --threads 1 --quiet
# lam > 0 (sparsifying), MLPs, seed 0; baselines optimise the same objective (lr tuned on it).
t $PY amortize train --zoo $R/zoo-mlp --out $R/mlp-sym-l1-s0 --seed 0 --steps 600 --lam 1e-3 $TR
t $PY amortize eval --zoo $R/zoo-mlp --runs $R/mlp-sym-l1-s0 --out $R/eval-mlp-l1 --sgd-epochs 1,5,25,150 \
  --adam-epochs 1,5,25,150 --tune-lr --tune-networks 8 --threads 1 --quiet
# Ablation: the same ScaleGMN-B without the layer-normalised input (the first increment's input), 3 seeds.
TRN="${TR/--input-norm layer/--input-norm none}"
for kind in mlp cnn; do
  for seed in 0 1 2; do
    t $PY amortize train --zoo $R/zoo-$kind --out $R/$kind-sym-nonorm-s$seed --seed $seed --steps ${STEPS[$kind]} $TRN
  done
  t $PY amortize eval --zoo $R/zoo-$kind --runs $R/$kind-sym-nonorm-s0 $R/$kind-sym-nonorm-s1 $R/$kind-sym-nonorm-s2 \
    --out $R/eval-$kind-nonorm --sgd-epochs none --adam-epochs none --threads 1 --quiet
done
# ReLU CNNs (positive-scale group): the layer normalisation is not scale-invariant, so ScaleGMN-B gets the raw input and
# GMN-B the normalised one; SGD/Adam up to 25 epochs on 16 networks, lr tuned at 5 epochs on 4 validation networks.
t $PY zoo cnn --n 160 --out $R/zoo-cnn-relu ${Z/tanh/relu} --chunk 40
runs=()
for seed in 0 1 2; do
  t $PY amortize train --zoo $R/zoo-cnn-relu --out $R/relu-sym-s$seed --seed $seed --steps 300 $TRN
  t $PY amortize train --zoo $R/zoo-cnn-relu --out $R/relu-broken-s$seed --seed $seed --steps 300 --broken $TR
  runs+=($R/relu-sym-s$seed $R/relu-broken-s$seed)
done
t $PY amortize eval --zoo $R/zoo-cnn-relu --runs "${runs[@]}" --out $R/eval-relu-oneshot --sgd-epochs none --adam-epochs none \
  --threads 1 --quiet
t $PY amortize eval --zoo $R/zoo-cnn-relu --runs "${runs[@]}" --out $R/eval-relu --max-test 16 --sgd-epochs 1,5,25 \
  --adam-epochs 1,5,25 --tune-lr --tune-networks 4 --tune-epochs 5 --threads 1 --quiet
