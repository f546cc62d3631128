#!/bin/sh
# The molora command on every fixture layout and on malformed inputs: outputs against the
# float64 expectations, non-zero exit with exactly one stderr line on bad input.
# Usage: tests/test_cli.sh [build/molora]   (from the repository root)
B=${1:-build/molora}
F=tests/fixtures
. tests/lib.sh
fwd() { # dir module expected [extra args...]
    d=$1; m=$2; e=$3; shift 3
    if $B forward "$d" --module "$m" --input $F/x.npy --output $T/y.npy "$@" 2>$T/err &&
       python3 tests/npy_close.py $T/y.npy "$e" >/dev/null; then ok; else bad "forward $d $m $*: $(cat $T/err)"; fi
}
fwd $F/peft model.layers.0.self_attn.q_proj $F/peft/expected.layers.0.q_proj.npy
fwd $F/peft base_model.model.model.layers.1.self_attn.v_proj $F/peft/expected.layers.1.v_proj.npy
fwd $F/peft_rslora model.layers.1.self_attn.q_proj $F/peft_rslora/expected.layers.1.q_proj.npy
fwd $F/adamole model.layers.0.self_attn.q_proj $F/adamole/expected.layers.0.q_proj.npy
fwd $F/mole model.layers.0.self_attn.v_proj $F/mole/expected.layers.0.v_proj.npy
fwd $F/mola model.layers.0.self_attn.o_proj $F/mola/expected.layers.0.o_proj.npy
fwd $F/mola model.layers.1.self_attn.o_proj $F/mola/expected.layers.1.o_proj.npy
fwd $F/molora model.layers.0.self_attn.k_proj $F/molora/expected.layers.0.k_proj.npy
fwd $F/molora model.layers.0.self_attn.k_proj $F/molora/expected.layers.0.k_proj.mask02.npy --mask 1 \
    --weights-out $T/w.npy
fwd $F/molora model.layers.0.self_attn.k_proj $F/molora/expected_full.layers.0.k_proj.npy --base $F/base
fwd $F/molora model.layers.0.self_attn.k_proj $F/molora/expected_full.layers.0.k_proj.npy \
    --base $F/base/model.safetensors.index.json
# --precision: a BF16 file stays BF16 (auto), f32 widens it, bf16 rounds an F32 file; all within the tolerance
for p in auto f32 bf16; do
    fwd $F/mola model.layers.1.self_attn.o_proj $F/mola/expected.layers.1.o_proj.npy --precision $p
    fwd $F/peft_rslora model.layers.1.self_attn.q_proj $F/peft_rslora/expected.layers.1.q_proj.npy --precision $p
done
accept $B forward $F/peft --module model.layers.0.self_attn.q_proj --input $F/x.npy --output $T/y.npy --precision bf16
for v in x_v2 x_v3; do
    if $B forward $F/molora --module model.layers.0.self_attn.k_proj --input $F/$v.npy --output $T/y.npy &&
       python3 tests/npy_close.py $T/y.npy $F/molora/expected.layers.0.k_proj.npy >/dev/null; then ok; \
           else bad "npy $v"; fi
done
for d in peft peft_rslora adamole mole mola molora; do
    if $B inspect $F/$d --json >$T/j && python3 -c \
        "import json,sys; j=json.load(open(sys.argv[1])); assert j['layout'] and j['modules']" $T/j; then ok; \
        else bad "inspect --json $d"; fi
done
# compose two independently trained PEFT adapters with ranks 1 and 3, then run the result
if $B compose --expert $F/compose_e0 --expert $F/compose_e1 --gate $F/compose_gate.safetensors --out $T/comp 2>$T/err; \
    then ok; else bad "compose: $(cat $T/err)"; fi
fwd $T/comp model.layers.0.self_attn.q_proj $F/compose_expected.layers.0.q_proj.npy
# refusals: one line naming the file / tensor / key
refuse "Fortran" $B forward $F/molora --module model.layers.0.self_attn.k_proj --input $F/x_fortran.npy \
    --output $T/y.npy
refuse "<f8" $B forward $F/molora --module model.layers.0.self_attn.k_proj --input $F/x_f64.npy --output $T/y.npy
refuse "width 6" $B forward $F/molora --module model.layers.0.self_attn.k_proj --input $F/x_wide.npy --output $T/y.npy
refuse "--precision f16: expected auto, f32 or bf16" $B forward $F/mola --module model.layers.1.self_attn.o_proj \
    --input $F/x.npy --output $T/y.npy --precision f16
refuse "no adapted module" $B forward $F/molora --module model.layers.9.q_proj --input $F/x.npy --output $T/y.npy
refuse "--mask" $B forward $F/molora --module model.layers.0.self_attn.k_proj --input $F/x.npy --output $T/y.npy \
    --mask 7
refuse "lora_gating" $B compose --expert $F/compose_e0 --expert $F/compose_e1 \
    --gate $F/base/model-00001-of-00002.safetensors --out $T/c2
refuse "not a plain PEFT" $B compose --expert $F/mola --gate $F/compose_gate.safetensors --out $T/c3
refuse "use_dora" $B inspect $F/bad/dora
refuse "bias" $B inspect $F/bad/bias
refuse "embed_tokens" $B inspect $F/bad/embedding
refuse "q_proj" $B inspect $F/bad/missing_b
refuse "q_proj" $B inspect $F/bad/shape
refuse "r = 3" $B inspect $F/bad/rank
refuse "I32" $B inspect $F/bad/i32
refuse "adapter_config.json" $B inspect $F/bad/config_json
refuse "IA3" $B inspect $F/bad/peft_type
refuse "no 2-D weight" $B alpha $F/base   # its matrices are under 10 wide; tests/test_alpha_cli.sh covers alpha
# a truncated and a garbage adapter_model.safetensors
cp -r $F/molora $T/trunc && head -c 100 $F/molora/adapter_model.safetensors >$T/trunc/adapter_model.safetensors
refuse "adapter_model.safetensors" $B inspect $T/trunc
cp -r $F/molora $T/garbage && printf 'garbage!garbage!' >$T/garbage/adapter_model.safetensors
refuse "adapter_model.safetensors" $B inspect $T/garbage
# GPT-2 Conv1D (PEFT fan_in_fan_out: base weight stored (in, out)) against PEFT 0.20's own forward
# (tests/fixtures/make_gpt2_fixture.py): square and non-square layers, T = 1, 5, 20, full and delta
G=$F/gpt2
gfwd() { # module input expected [extra args...]
    m=$1; x=$2; e=$3; shift 3
    if $B forward $G/adapter --module "transformer.$m" --input $G/$x --output $T/y.npy "$@" 2>$T/err &&
       python3 tests/npy_close.py $T/y.npy $G/$e 2e-6 >/dev/null; then ok; \
           else bad "gpt2 forward $m $x $*: $(cat $T/err)"; fi
}
for m in h.0.attn.c_attn h.0.attn.c_proj h.0.mlp.c_fc h.1.attn.c_attn h.1.attn.c_proj h.1.mlp.c_fc; do
    gfwd $m x32.t5.npy full.$m.t5.npy --base $G/base
    gfwd $m x32.t5.npy delta.$m.t5.npy
done
for m in h.0.mlp.c_proj h.1.mlp.c_proj; do gfwd $m x128.t5.npy full.$m.t5.npy --base $G/base/model.safetensors; done
gfwd h.0.attn.c_attn x32.t1.npy full.h.0.attn.c_attn.t1.npy --base $G/base
gfwd h.0.attn.c_attn x32.t20.npy full.h.0.attn.c_attn.t20.npy --base $G/base
if $B inspect $G/adapter --json >$T/j &&
   json_holds $T/j "len(j['modules']) == 8 and all(m['fan_in_fan_out'] is True for m in j['modules'])" &&
   $B inspect $F/peft --json >$T/j && json_holds $T/j "all(m['fan_in_fan_out'] is False for m in j['modules'])" &&
   [ "$($B inspect $G/adapter | grep -c ' F32  fan_in_fan_out$')" -eq 8 ]
then ok; else bad "inspect fan_in_fan_out"; fi
# the same Conv1D base without fan_in_fan_out in the config: (out, in) expected, refused by shape
mkdir -p $T/nofifo && cp $G/adapter/adapter_model.safetensors $T/nofifo/ &&
    sed 's/"fan_in_fan_out": true/"fan_in_fan_out": false/' $G/adapter/adapter_config.json \
        >$T/nofifo/adapter_config.json
refuse "want (96, 32)" $B forward $T/nofifo --module transformer.h.0.attn.c_attn --input $G/x32.t5.npy \
    --output $T/y.npy --base $G/base
# Arrow (issue 15): compose PEFT LoRAs with no gate, against PEFT 0.20's own Arrow model
# (tests/fixtures/make_arrow.py): PEFT's prototypes given (--prototypes), GenKnowSub off and on
# (--general), (T, k) = (1, 2), (0.3, 3), (2, 1); and molora's exact prototypes against PEFT run
# with numpy's exact ones
A=$F/arrow
AX="--expert $A/task_0 --expert $A/task_1 --expert $A/task_2"
AQ=model.layers.0.self_attn.q_proj
afwd() { # composed-dir expected.npy
    if $B forward "$1" --module $AQ --input $A/x.npy --output $T/y.npy --base $A/base.safetensors 2>$T/err &&
       python3 tests/npy_close.py $T/y.npy "$2" 1e-5 >/dev/null; then ok
    else bad "arrow forward $1 vs $2: $(cat $T/err)"; fi
}
for c in 1:2 0.3:3 2:1; do
    tag=t${c%%:*}.k${c#*:}
    for g in 0 1; do
        gen=; [ $g = 1 ] && gen="--general $A/general_0 --general $A/general_1"
        accept $B compose $AX --routing arrow:${c#*:}:${c%%:*} --prototypes $A/protos.g$g.safetensors $gen \
            --out $T/arrow_p$g
        afwd $T/arrow_p$g $A/y.g$g.$tag.q.npy
        accept $B compose $AX --routing arrow:${c#*:}:${c%%:*} $gen --out $T/arrow_x$g
        afwd $T/arrow_x$g $A/yexact.g$g.$tag.q.npy
    done
done
# a composed arrow file without arrow_prototypes: computed at init, the same outputs
python3 - $T/arrow_x0 $T/arrow_np <<'EOF'
import json, os, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
raw = open(os.path.join(src, "adapter_model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr, data = json.loads(raw[8:8 + n]), raw[8 + n:]
out, blob = {}, b""
for k, v in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    if k.endswith(".arrow_prototypes"):
        continue
    a, b = v["data_offsets"]
    out[k] = dict(v, data_offsets=[len(blob), len(blob) + b - a])
    blob += data[a:b]
h = json.dumps(out).encode()
h += b" " * (-len(h) % 8)
open(os.path.join(dst, "adapter_model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + blob)
EOF
afwd $T/arrow_np $A/yexact.g0.t2.k1.q.npy
# the config says what was composed; inspect names the rule; the default k is 3, T 1
accept $B compose $AX --routing arrow --general $A/general_0 --general $A/general_1 --out $T/arrow_d
if json_holds $T/arrow_d/adapter_config.json "j['routing'] == 'arrow' and j['top_k'] == 3 and j['temperature'] == 1 \
   and j['arrow_prototypes'] == 'exact' and len(j['general']) == 2 and j['expert_scaling'] == [1, 2, 4]" &&
   [ "$($B inspect $T/arrow_d | grep -c ' arrow ')" -eq 2 ]; then ok; else bad "arrow config / inspect"; fi
# mixed ranks (1 and 3) are allowed without --general; k = N = 2 is a dense softmax over |z|
accept $B compose --expert $F/compose_e0 --expert $F/compose_e1 --routing arrow:2 --out $T/arrow_mixed
accept $B forward $T/arrow_mixed --module $AQ --input $F/x.npy --output $T/y.npy
# refusals of the options
refuse "--gate is not used with --routing arrow" $B compose $AX --routing arrow --gate $F/compose_gate.safetensors \
    --out $T/c4
refuse "--prototypes needs --routing arrow" $B compose $AX --gate $F/compose_gate.safetensors \
    --prototypes $A/protos.g0.safetensors --out $T/c4
refuse "--general needs --routing arrow" $B compose $AX --gate $F/compose_gate.safetensors --general $A/general_0 \
    --out $T/c4
refuse "usage: molora compose" $B compose $AX --out $T/c4
refuse "k = 4 but there are 3 experts" $B compose $AX --routing arrow:4 --out $T/c4
refuse "k = 3 but there are 2 experts" $B compose --expert $A/task_0 --expert $A/task_1 --routing arrow --out $T/c4
refuse "K must be a whole number" $B compose $AX --routing arrow:0 --out $T/c4
refuse "K must be a whole number" $B compose $AX --routing arrow: --out $T/c4
refuse "T must be a finite decimal number > 0" $B compose $AX --routing arrow:2:0 --out $T/c4
refuse "T must be a finite decimal number > 0" $B compose $AX --routing arrow:2:-1 --out $T/c4
refuse "T must be a finite decimal number > 0" $B compose $AX --routing arrow:2:nan --out $T/c4
refuse "expected arrow, arrow:K or arrow:K:T" $B compose $AX --routing arrows --out $T/c4
refuse "rank 3, tests/fixtures/compose_e0 has rank 1" $B compose --expert $F/compose_e0 --expert $F/compose_e1 \
    --routing arrow:1 --general $F/compose_e0 --out $T/c4
refuse "is (4, 5) of rank 3, the experts' is (4, 5) of rank 1" $B compose --expert $F/compose_e0 --routing arrow:1 \
    --general $F/compose_e1 --out $T/c4
refuse "adapts 2 modules, tests/fixtures/compose_e0 adapts 1" $B compose --expert $F/compose_e0 --routing arrow:1 \
    --general $A/general_0 --out $T/c4
refuse "not a plain PEFT LoRA adapter (--general)" $B compose $AX --routing arrow --general $F/mola --out $T/c4
refuse "--out $A/task_0 is the input --expert" $B compose $AX --routing arrow --out $A/task_0
refuse "is the input --prototypes" $B compose $AX --routing arrow --prototypes $A/protos.g0.safetensors \
    --out $A/protos.g0.safetensors
[ -d $T/c4 ] && bad "a refused compose left --out behind" || ok
finish cli
