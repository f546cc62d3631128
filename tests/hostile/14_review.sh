# The attacker's review of the command (changes/fixcli.md): compose keeps fan_in_fan_out, outputs
# that are not regular files and dangling links decided before computing, every file of --base and
# of a sharded adapter_model.safetensors directory protected, an existing compose --out holding
# anything else refused, output names up to NAME_MAX, --base names without the model's prefix.
R=$T/14_review
mkdir -p $R
G=$F/gpt2
GM=transformer.h.0.attn.c_attn
GFWD="$B forward $G/adapter --module $GM --input $G/x32.t5.npy"
# a safetensors file of float32 tensors: gate.py OUT d_in NAME...  (each NAME (2, d_in) zeros)
cat >$R/gate.py <<'PY'
import json, struct, sys
out, din, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
h, off, data = {}, 0, b""
for n in names:
    d = struct.pack("<%df" % (2 * din), *([0.0] * (2 * din)))
    h[n] = {"dtype": "F32", "shape": [2, din], "data_offsets": [off, off + len(d)]}
    off += len(d); data += d
j = json.dumps(h).encode(); j += b" " * ((8 - len(j) % 8) % 8)
open(out, "wb").write(struct.pack("<Q", len(j)) + j + data)
PY
# names stripped of their first component ("transformer."): strip.py IN OUT [RENAME_FROM RENAME_TO]
cat >$R/strip.py <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
b = open(src, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
o = {}
for k, v in h.items():
    if k != "__metadata__" and k.startswith("transformer."): k = k[len("transformer."):]
    if len(sys.argv) > 4 and k == sys.argv[3]: k = sys.argv[4]
    o[k] = v
j = json.dumps(o).encode(); j += b" " * ((8 - len(j) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(j)) + j + b[8 + n:])
PY
names=""
for l in 0 1; do
    for m in attn.c_attn attn.c_proj mlp.c_fc; do \
        names="$names base_model.model.transformer.h.$l.$m.lora_gating.weight"; done
done
python3 $R/gate.py $R/g32.safetensors 32 $names
python3 $R/gate.py $R/g128.safetensors 128 base_model.model.transformer.h.0.mlp.c_proj.lora_gating.weight \
    base_model.model.transformer.h.1.mlp.c_proj.lora_gating.weight
python3 - $R/g32.safetensors $R/g128.safetensors $R/gate.safetensors <<'PY'
import json, struct, sys
h, data = {}, b""
for p in sys.argv[1:3]:
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    for k, v in json.loads(b[8:8 + n]).items():
        s, e = v["data_offsets"]; v["data_offsets"] = [len(data), len(data) + e - s]; h[k] = v
        data += b[8 + n + s:8 + n + e]
j = json.dumps(h).encode(); j += b" " * ((8 - len(j) % 8) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(j)) + j + data)
PY

# ---- 1. compose keeps fan_in_fan_out: two copies of the GPT-2 adapter with an all-zero gate
#      (weights 1/2 each) give the adapter's own full output on the Conv1D base
accept $B compose --expert $G/adapter --expert $G/adapter --gate $R/gate.safetensors --out $R/c1
if $B inspect $R/c1 --json 2>$T/err | grep -q '"fan_in_fan_out": true'; then ok; \
    else bad "14: composed GPT-2 adapter lost fan_in_fan_out: $(cat $T/err)"; fi
for m in h.0.attn.c_proj h.0.attn.c_attn; do
    if $B forward $R/c1 --module transformer.$m --input $G/x32.t5.npy --base $G/base --output $R/y1.npy 2>$T/err &&
       python3 tests/npy_close.py $R/y1.npy $G/full.$m.t5.npy 2e-6 >/dev/null; then ok; \
           else bad "14: composed forward --base $m: $(cat $T/err)"; fi
done
# experts that disagree are refused, naming both
cp -r $G/adapter $R/nofifo
sed 's/"fan_in_fan_out": true/"fan_in_fan_out": false/' $G/adapter/adapter_config.json >$R/nofifo/adapter_config.json
refuse "$R/nofifo has fan_in_fan_out false, $G/adapter has true" $B compose --expert $G/adapter --expert $R/nofifo \
    --gate $R/gate.safetensors --out $R/c1b
[ -e $R/c1b ] && bad "14: --out created for disagreeing experts" || ok

# ---- 2. an output that is not a regular file: refused before computing (a wrong-width --input
#      would otherwise be the error), the FIFO or directory untouched; the old y.npy kept
accept $GFWD --output $R/y2.npy && cp $R/y2.npy $R/y2.orig
mkfifo $R/fifo
refuse "$R/fifo is a FIFO, not a regular file" $B forward $G/adapter --module $GM --input $G/x128.t5.npy \
    --output $R/fifo
[ -p $R/fifo ] && ok || bad "14: $R/fifo replaced"
refuse "$R/fifo is a FIFO, not a regular file" $GFWD --output $R/y2.npy --weights-out $R/fifo
same $R/y2.npy $R/y2.orig
ln -s fifo $R/fifolink
refuse "$R/fifolink is a FIFO, not a regular file" $GFWD --output $R/fifolink
mkdir -p $R/odir
refuse "$R/odir is a directory, not a regular file" $B forward $G/adapter --module $GM --input $G/x128.t5.npy \
    --output $R/odir
# ---- 6. --weights-out a directory: refused before y.npy is replaced
refuse "$R/odir is a directory, not a regular file" $GFWD --output $R/y2.npy --weights-out $R/odir
same $R/y2.npy $R/y2.orig
[ -d $R/odir ] && [ -z "$(ls -A $R/odir)" ] && ok || bad "14: $R/odir changed"
# W's rename failing after Y's (an LD_PRELOAD rename that fails for */w.npy): the old Y is back,
# or no Y when there was none
mkdir -p $R/p6
cat >$R/p6/shim.c <<'CEOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
int rename(const char *a, const char *b)
{
    static int (*real)(const char *, const char *);
    size_t n = strlen(b);
    if (n >= 5 && !strcmp(b + n - 5, "w.npy")) { errno = EIO; return -1; }
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "rename");
    return real(a, b);
}
CEOF
if cc -shared -fPIC $R/p6/shim.c -o $R/p6/shim.so -ldl 2>/dev/null && [ "$(LD_PRELOAD=$R/p6/shim.so sh -c 'echo x')" = \
    x ]; then
    accept $GFWD --output $R/p6/y.npy --weights-out $R/p6/w.npy --mask 0
    cp $R/p6/y.npy $R/y6.orig && cp $R/p6/w.npy $R/w6.orig
    refuse "$R/p6/w.npy: cannot replace: Input/output error ($R/p6/y.npy left as it was)" env LD_PRELOAD=$R/p6/shim.so \
        $GFWD --output $R/p6/y.npy --weights-out $R/p6/w.npy
    same $R/p6/y.npy $R/y6.orig; same $R/p6/w.npy $R/w6.orig; no_temp $R/p6
    rm -f $R/p6/y.npy $R/p6/w.npy
    refuse "$R/p6/w.npy: cannot replace" env LD_PRELOAD=$R/p6/shim.so $GFWD --output $R/p6/y.npy \
        --weights-out $R/p6/w.npy
    [ -e $R/p6/y.npy ] && bad "14: $R/p6/y.npy left after W failed" || ok
    no_temp $R/p6
else
    skip "14_review: no cc or LD_PRELOAD: the failed-W-rename case not run"
fi
no_temp $R

# ---- 3. every regular file of a --base directory (and of an index .json's directory), whatever
#      its name, is an input
mkdir -p $R/base3 $R/base3j
cp $G/base/* $R/base3/ && cp $G/base/model.safetensors $R/base3/weights.bin
cp $R/base3/weights.bin $R/w3.orig
refuse "is the input --base $R/base3" $GFWD --base $R/base3 --output $R/base3/weights.bin
same $R/base3/weights.bin $R/w3.orig
cp $G/base/model.safetensors $R/base3j/shard.bin
printf '{"metadata": {}, "weight_map": {}}' >$R/base3j/index.json
refuse "is the input --base $R/base3j/index.json" $GFWD --base $R/base3j/index.json --output $R/base3j/shard.bin
same $R/base3j/shard.bin $R/w3.orig

# ---- 4. adapter_model.safetensors as a directory of shards: its files are inputs
mkdir -p $R/ad4/adapter_model.safetensors
cp $G/adapter/adapter_config.json $R/ad4/
cp $G/adapter/adapter_model.safetensors $R/ad4/adapter_model.safetensors/a.safetensors
refuse "is the input ADAPTER_DIR $R/ad4" $B forward $R/ad4 --module $GM --input $G/x32.t5.npy \
    --output $R/ad4/adapter_model.safetensors/a.safetensors
same $R/ad4/adapter_model.safetensors/a.safetensors $G/adapter/adapter_model.safetensors

# ---- 5. an existing compose --out holds only the two files, as regular files; nothing else is
#      deleted and no temporary directory is left beside it
C="$B compose --expert $G/adapter --expert $G/adapter"
for n in .gate.molora-1 .hidden.molora-old-ABC; do
    rm -rf $R/o5 && mkdir -p $R/o5 && cp $R/gate.safetensors $R/o5/$n
    refuse "holds $n, which compose does not write" $C --gate $R/o5/.gate.molora-1 --out $R/o5
    same $R/o5/$n $R/gate.safetensors
done
rm -rf $R/o5 && mkdir -p $R/o5/.x.molora-dir
refuse "holds .x.molora-dir, which compose does not write" $C --gate $R/gate.safetensors --out $R/o5
[ -d $R/o5/.x.molora-dir ] && ok || bad "14: $R/o5/.x.molora-dir removed"
rm -rf $R/o5 && mkdir -p $R/o5 && ln -s $R/g128.safetensors $R/o5/adapter_model.safetensors
refuse "adapter_model.safetensors, which is a symbolic link, not a regular file" $C --gate $R/gate.safetensors \
    --out $R/o5
[ -L $R/o5/adapter_model.safetensors ] && ok || bad "14: $R/o5/adapter_model.safetensors replaced"
no_temp $R

# ---- 7. a dangling symbolic link: the file it names is created when its directory exists,
#      else refused before computing
rm -f $R/new7.npy && ln -s new7.npy $R/link7
accept $GFWD --output $R/link7
[ -L $R/link7 ] && [ -f $R/new7.npy ] && ok || bad "14: dangling $R/link7: the file it names was not created"
# two dangling links to one new file are the same output
ln -s same7.npy $R/link7y && ln -s same7.npy $R/link7w
refuse "is the same file as --output $R/link7y" $GFWD --output $R/link7y --weights-out $R/link7w
[ -e $R/same7.npy ] && bad "14: $R/same7.npy created" || ok
ln -s nodir7/y.npy $R/link7b
refuse "$R/link7b: the directory $R/nodir7 does not exist" $B forward $G/adapter --module $GM --input $G/x128.t5.npy \
    --output $R/link7b
[ -L $R/link7b ] && [ ! -e $R/nodir7 ] && ok || bad "14: $R/link7b changed"

# ---- 8. output names of 241..255 bytes: a shorter temporary name
long=$(printf 'y%.0s' $(seq 1 251)).npy
accept $GFWD --output $R/$long
accept $GFWD --output $R/$long --weights-out $R/w$(printf 'w%.0s' $(seq 1 250)).npy
longd=$(printf 'd%.0s' $(seq 1 250))
accept $C --gate $R/gate.safetensors --out $R/$longd
accept $C --gate $R/gate.safetensors --out $R/$longd
no_temp $R

# ---- 9. --base names without the model's base prefix (GPT2Model: "h.0...", no "transformer.")
mkdir -p $R/base9
python3 $R/strip.py $G/base/model.safetensors $R/base9/model.safetensors
for m in h.0.attn.c_attn h.0.attn.c_proj; do
    if $B forward $G/adapter --module transformer.$m --input $G/x32.t5.npy --base $R/base9/model.safetensors \
        --output $R/y9.npy 2>$T/err &&
       python3 tests/npy_close.py $R/y9.npy $G/full.$m.t5.npy 2e-6 >/dev/null; then ok; \
           else bad "14: forward --base without the prefix $m: $(cat $T/err)"; fi
done
python3 $R/strip.py $G/base/model.safetensors $R/base9/renamed.safetensors h.0.attn.c_attn.weight h.0.attn.c_attn.w
refuse "tried transformer.h.0.attn.c_attn.weight and h.0.attn.c_attn.weight" $GFWD --base $R/base9/renamed.safetensors \
    --output $R/y9.npy
