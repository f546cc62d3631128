# Command-line values parsed strictly, repeated and unknown flags refused, no user text pasted
# into compose's JSON (issue 12). Every refusal: non-zero exit, one stderr line, the substring.
V=$T/11_cli_values
mkdir -p $V
M=model.layers.0.self_attn.k_proj
FWD="$B forward $F/molora --module $M --input $F/x.npy --output $V/y.npy"
CMP="$B compose --expert $F/compose_e0 --expert $F/compose_e1 --gate $F/compose_gate.safetensors"

# ---- --routing topk:K and threshold:V, forward and compose
for r in topk:2abc topk:4294967298 topk: "topk: 1" "topk:+1" topk:0 topk:-1 "topk:1 " topk:0x2; do
    refuse "forward: --routing $r: K must be a whole number >= 1" $FWD --routing "$r"
    refuse "compose: --routing $r: K must be a whole number >= 1" $CMP --out $V/c --routing "$r"
done
for r in threshold:nan threshold:NaN threshold:inf threshold:-inf threshold:1e39 threshold:1e-50 threshold: \
         "threshold: 0.1" "threshold:+0.1" "threshold:0.1x" threshold:0x1p-2 'threshold:0.1, "peft_type": "LORA"'; do
    refuse "forward: --routing $r: V must be a finite decimal number" $FWD --routing "$r"
    refuse "compose: --routing $r: V must be a finite decimal number" $CMP --out $V/c --routing "$r"
done
[ ! -e $V/c ] && ok || bad "compose wrote $V/c although every --routing was refused"
refuse "forward: --routing sparse: expected dense, topk:K, threshold:V or adamole" $FWD --routing sparse
refuse "compose: --routing adamole: expected dense, topk:K or threshold:V" $CMP --out $V/c --routing adamole
refuse "forward: --routing topk:4: k must be in 1..3 (module $M has 3 experts)" $FWD --routing topk:4
accept $FWD --routing topk:3
refuse "compose: --routing topk:3: k must be in 1..2" $CMP --out $V/c --routing topk:3
accept $CMP --out $V/c --routing topk:2
# the threshold written from the parsed value, not the text
accept $CMP --out $V/ct --routing threshold:0.10000000000000000001
python3 -c "
import json, sys
c = json.load(open(sys.argv[1]))
assert c['routing'] == 'threshold' and abs(c['threshold'] - 0.1) < 1e-8 and c['peft_type'] == 'MOLORA', c
" $V/ct/adapter_config.json && ok ||
    bad "compose threshold:0.1...: adapter_config.json $(cat $V/ct/adapter_config.json)"
accept $B inspect $V/ct
# ---- --tau-max, --temperature: finite, in the library's ranges
for v in -0.1 nan inf 1e39 " 1" +1 1x ""; do
    refuse "forward: --tau-max" $FWD --routing adamole --tau-max "$v"
done
for v in 0 -1 nan inf 1e39 1e-50 " 2" +2 2x; do
    refuse "forward: --temperature $v: expected a finite decimal number > 0" $FWD --temperature "$v"
done
accept $FWD --temperature 0.5
# ---- --mask: indices 0..N-1 (N = 3 here), no empty items, duplicates, spaces or signs
for m in "1," ",1" "1,,2" ","; do refuse "forward: --mask $m: empty item" $FWD --mask "$m"; done
for m in " 1" "1 " "+1" "-1" "1, 2" "1;2" "0x1" "a"; do refuse "forward: --mask $m: indices are digits only" $FWD \
    --mask "$m"; done
refuse "forward: --mask 1,1: index 1 given twice" $FWD --mask 1,1
refuse "forward: --mask 0,2,0: index 0 given twice" $FWD --mask 0,2,0
refuse "forward: --mask 3: index 3 is not an expert of module $M (N = 3: indices 0..2)" $FWD --mask 3
refuse "forward: --mask 0,3: index 3 is not an expert" $FWD --mask 0,3
refuse "forward: --mask 4294967296: expert index 4294967296 is too large" $FWD --mask 4294967296
accept $FWD --mask 2
accept $FWD --mask 0,1,2
# ---- --precision: auto, f32 or bf16, spelt exactly (BF16 experts, issue 14 item 5)
for v in BF16 F32 bf16x " bf16" "bf16 " f16 fp32 bfloat16 "bf16,f32" 1; do
    refuse "forward: --precision $v: expected auto, f32 or bf16" $FWD --precision "$v"
done
refuse "forward: --precision given twice" $FWD --precision bf16 --precision f32
refuse "forward: --precision needs a value" $B forward $F/molora --precision
refuse "forward: --precision needs a value" $B forward $F/molora --precision ""
for v in auto f32 bf16; do accept $FWD --precision $v; done
# ---- repeated single-valued flags (list flags stay repeatable), unknown flags, missing values
for f in --module --input --output --routing --tau-max --temperature --mask --weights-out --base; do
    refuse "forward: $f given twice" $B forward $F/molora --module $M --input $F/x.npy --output $V/y.npy $f a $f b
done
for f in --gate --out --routing; do refuse "compose: $f given twice" $CMP --out $V/c2 $f a $f b; done
refuse "inspect: --json given twice" $B inspect $F/molora --json --json
for f in --method --budget --beta --prefix --layers; do refuse "alpha: $f given twice" $B alpha $F/alpha_model $f a $f \
    b; done
refuse "alpha: --json given twice" $B alpha $F/alpha_model --json --json
refuse "alpha: --upstream-fp16 given twice" $B alpha $F/alpha_model --upstream-fp16 --upstream-fp16
refuse "forward: unknown option --mdule" $B forward $F/molora --mdule $M --input $F/x.npy --output $V/y.npy
refuse "compose: unknown option --experts" $CMP --out $V/c --experts $F/compose_e0
refuse "inspect: unknown option --jsno" $B inspect $F/molora --jsno
refuse "alpha: unknown option --methd" $B alpha $F/alpha_model --methd ww
refuse "inspect: unexpected argument extra (ADAPTER_DIR is $F/molora)" $B inspect $F/molora extra
refuse "compose: unexpected argument extra" $CMP --out $V/c extra
for f in --module --input --output --routing --tau-max --temperature --mask --weights-out --base; do
    refuse "forward: $f needs a value" $B forward $F/molora $f
    refuse "forward: $f needs a value" $B forward $F/molora $f ""
done
for f in --expert --gate --out --routing; do refuse "compose: $f needs a value" $B compose $f; done
for f in --method --budget --beta --prefix --layers; do refuse "alpha: $f needs a value" $B alpha $F/alpha_model $f; \
    done
for v in 2abc 4294967298 " 1" +1 -1 1000001 ""; do refuse "alpha: --budget" $B alpha $F/alpha_model --budget "$v"; done
for v in 0 -1 nan inf " 1" +1 1x; do refuse "alpha: --beta $v: want a finite number > 0" $B alpha $F/alpha_model \
    --beta "$v"; done
refuse "alpha: --method svd: want fix_finger, ww or ww077" $B alpha $F/alpha_model --method svd
refuse "compose: usage" $B compose --expert $F/compose_e0 --expert $F/compose_e1 --out $V/c
refuse "forward: usage" $B forward $F/molora --module $M --input $F/x.npy

# ---- compose: odd but valid names are escaped and load back; invalid UTF-8 refused
python3 tests/hostile/make_odd_adapters.py $V/odd \
    "$(printf 'model.layers.0.q"\\\t\001\177\302\251\342\202\254\360\237\230\200_proj')"
E0="$V/odd/ex\"p\\	é0"; E1="$V/odd/$(printf 'line\nbreak')1"
mv $V/odd/e0 "$E0" && mv $V/odd/e1 "$E1"
accept $B compose --expert "$E0" --expert "$E1" --gate $V/odd/gate.safetensors --out $V/odd/c
$B inspect "$E0" --json >$V/odd/e0.json 2>$V/err && $B inspect $V/odd/c --json >$V/odd/c.json 2>>$V/err &&
python3 -c "
import json, sys
e, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
cfg = json.load(open(sys.argv[3]))
assert c['layout'] == 'molora', c
names = [m['name'] for m in e['modules']]
assert [m['name'] for m in c['modules']] == names and [m['scaling'] for m in c['modules']] == [[2, 4], [2, 8]], (c, e)
assert cfg['experts'] == [sys.argv[4], sys.argv[5]], cfg['experts']
assert sorted(cfg['expert_scaling']) == sorted(names), cfg
" $V/odd/e0.json $V/odd/c.json $V/odd/c/adapter_config.json "$E0" "$E1" && ok ||
    bad "compose of odd names does not load back: $(cat $V/err)"
BADUTF="$V/odd/$(printf 'bad\377name')"
cp -r "$E0" "$BADUTF"
refuse "compose: --expert $BADUTF: the path is not valid UTF-8" $B compose --expert "$BADUTF" --expert "$E1" \
    --gate $V/odd/gate.safetensors --out $V/odd/c_bad
[ ! -e $V/odd/c_bad ] && ok || bad "compose created $V/odd/c_bad although it refused"
# ---- a newline (or other control character) in an echoed argument keeps the message on one line
NL="$(printf 'a\nb')"
refuse "inspect: unexpected argument a?b (ADAPTER_DIR is a?b)" $B inspect "$NL" "$NL"
refuse "forward: --mask 1?2: indices are digits only" $FWD --mask "$(printf '1\n2')"
refuse "a?b/adapter_config.json" $B inspect "$NL"
refuse "$V/x?y.npy: cannot open" $B forward $F/molora --module $M --input "$V/$(printf 'x\ty').npy" --output $V/y.npy
# ---- a library error names its file once (the library's log line already holds the path)
printf 'garbage!garbage!' >$V/garbage.safetensors
once() { # SUBSTRING CMD...: refused, SUBSTRING exactly once on the line
    want=$1; shift
    refuse "$want" "$@"
    n=$(grep -o -- "$want" $T/err | wc -l)
    [ "$n" -eq 1 ] && ok || bad "'$want' printed $n times: $(cat $T/err)"
}
once "$V/garbage.safetensors" $B alpha $V/garbage.safetensors
once "$V/garbage.safetensors" $FWD --base $V/garbage.safetensors
cp -r $F/molora $V/garbage_ad && cp $V/garbage.safetensors $V/garbage_ad/adapter_model.safetensors
once "$V/garbage_ad" $B inspect $V/garbage_ad
