# Writes that fail half-way and outputs that would replace an input (issue 12): the command must
# exit non-zero with one stderr line naming the path and the cause, leave the old file
# byte-identical (cmp against a copy) and leave no temporary file behind.
W=$T/10_writes
mkdir -p $W
M=model.layers.0.self_attn.k_proj
# big.npy: 20000 x 5 float32 input, so Y (20000 x 4) is 320 KB, past every limit below
python3 -c "
import struct, sys
T, d = 20000, 5
h = \"{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }\" % (T, d)
h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() +
                              struct.pack('<%df' % (T * d), *([0.25] * (T * d))))
" $W/big.npy
accept $B forward $F/molora --module $M --input $F/x.npy --output $W/y.npy
cp $W/y.npy $W/y.orig

# ---- a file-size limit: SIGXFSZ ignored by the caller, and at its default (molora ignores it itself)
refuse "y.npy: write failed: File too large" sh -c 'trap "" XFSZ; ulimit -f 64; exec "$0" "$@"' $B forward $F/molora \
    --module $M --input $W/big.npy --output $W/y.npy
same $W/y.npy $W/y.orig
no_temp $W
refuse "y.npy: write failed: File too large" sh -c 'ulimit -f 64; exec "$0" "$@"' $B forward $F/molora --module $M \
    --input $W/big.npy --output $W/y.npy
same $W/y.npy $W/y.orig
no_temp $W
# ---- a full file system (root: a 16 KB tmpfs)
mkdir -p $W/mnt
if mount -t tmpfs -o size=16k tmpfs $W/mnt 2>/dev/null; then
    accept $B forward $F/molora --module $M --input $F/x.npy --output $W/mnt/y.npy
    cp $W/mnt/y.npy $W/y_tmpfs.orig
    refuse "mnt/y.npy: write failed: No space left on device" $B forward $F/molora --module $M --input $W/big.npy \
        --output $W/mnt/y.npy
    same $W/mnt/y.npy $W/y_tmpfs.orig
    no_temp $W/mnt
    # compose into an existing --out on a full disk: both old files intact
    rm -f $W/mnt/y.npy
    accept $B compose --expert $F/compose_e0 --expert $F/compose_e1 --gate $F/compose_gate.safetensors --out $W/mnt/comp
    cp -r $W/mnt/comp $W/comp_tmpfs.orig
    dd if=/dev/zero of=$W/mnt/fill bs=1024 count=64 2>/dev/null
    refuse "adapter_model.safetensors: write failed: No space left on device" $B compose --expert $F/compose_e0 \
        --expert $F/compose_e1 --gate $F/compose_gate.safetensors --out $W/mnt/comp --routing topk:1
    same $W/mnt/comp/adapter_model.safetensors $W/comp_tmpfs.orig/adapter_model.safetensors
    same $W/mnt/comp/adapter_config.json $W/comp_tmpfs.orig/adapter_config.json
    no_temp $W/mnt/comp
    no_temp $W/mnt
    umount $W/mnt
else
    skip "10_writes: mount -t tmpfs failed (not root, or no CAP_SYS_ADMIN): full-disk cases not run"
fi

# ---- an output that is an input, compared by device and inode
cp -r $F/compose_e0 $W/e0 && cp -r $F/compose_e1 $W/e1 && cp -r $W/e1 $W/e1.orig
refuse "compose: --out $W/e1 is the input --expert $W/e1" $B compose --expert $W/e0 --expert $W/e1 \
    --gate $F/compose_gate.safetensors --out $W/e1
same $W/e1/adapter_model.safetensors $W/e1.orig/adapter_model.safetensors
same $W/e1/adapter_config.json $W/e1.orig/adapter_config.json
refuse "is the input --expert $W/e1" $B compose --expert $W/e0 --expert $W/e1 --gate $F/compose_gate.safetensors \
    --out $W/e1/.
ln -s e1 $W/e1link
refuse "is the input --expert $W/e1" $B compose --expert $W/e0 --expert $W/e1 --gate $F/compose_gate.safetensors \
    --out $W/e1link
same $W/e1/adapter_model.safetensors $W/e1.orig/adapter_model.safetensors
# --out holding a hard link to an expert's weights, or holding --gate
mkdir -p $W/hl && ln $W/e0/adapter_model.safetensors $W/hl/adapter_model.safetensors
refuse "compose: --out $W/hl/adapter_model.safetensors is the input --expert $W/e0 ($W/e0/adapter_model.safetensors)" \
    $B compose --expert $W/e0 --expert $W/e1 --gate $F/compose_gate.safetensors --out $W/hl
mkdir -p $W/g && cp $F/compose_gate.safetensors $W/g/adapter_model.safetensors \
    && cp $W/g/adapter_model.safetensors $W/gate.orig
refuse "compose: --out $W/g/adapter_model.safetensors is the input --gate" $B compose --expert $W/e0 --expert $W/e1 \
    --gate $W/g/adapter_model.safetensors --out $W/g
same $W/g/adapter_model.safetensors $W/gate.orig
# forward: --output over --input, the adapter's files, a --base shard; --weights-out == --output
cp $F/x.npy $W/x.npy && cp $F/x.npy $W/x.orig
refuse "forward: --output $W/x.npy is the input --input $W/x.npy" $B forward $F/molora --module $M --input $W/x.npy \
    --output $W/x.npy
same $W/x.npy $W/x.orig
ln -s x.npy $W/xlink.npy
refuse "forward: --output $W/xlink.npy is the input --input $W/x.npy" $B forward $F/molora --module $M \
    --input $W/x.npy --output $W/xlink.npy
same $W/x.npy $W/x.orig
cp -r $F/molora $W/ad && cp $W/ad/adapter_model.safetensors $W/ad.orig
refuse "forward: --output $W/ad/adapter_model.safetensors is the input ADAPTER_DIR $W/ad" $B forward $W/ad --module $M \
    --input $F/x.npy --output $W/ad/adapter_model.safetensors
same $W/ad/adapter_model.safetensors $W/ad.orig
cp -r $F/base $W/base && cp $W/base/model-00002-of-00002.safetensors $W/shard.orig
shard=$W/base/model-00002-of-00002.safetensors index=$W/base/model.safetensors.index.json
refuse "forward: --weights-out $shard is the input --base $index" $B forward $W/ad --module $M --input $F/x.npy \
    --output $W/y.npy --base $index --weights-out $shard
same $W/base/model-00002-of-00002.safetensors $W/shard.orig
refuse "forward: --output $W/base/model.safetensors.index.json is the input --base $W/base" $B forward $W/ad \
    --module $M --input $F/x.npy --output $W/base/model.safetensors.index.json --base $W/base
refuse "forward: --weights-out $W/y.npy is the same file as --output $W/y.npy" $B forward $F/molora --module $M \
    --input $F/x.npy --output $W/y.npy --weights-out $W/y.npy
refuse "forward: --weights-out $W/./new.npy is the same file as --output $W/new.npy" $B forward $F/molora --module $M \
    --input $F/x.npy --output $W/new.npy --weights-out $W/./new.npy
same $W/y.npy $W/y.orig
[ ! -e $W/new.npy ] && ok || bad "$W/new.npy written although refused"

# ---- compose --out: the directory is replaced as a whole, and only if it holds compose's files alone
CMP="$B compose --expert $F/compose_e0 --expert $F/compose_e1 --gate $F/compose_gate.safetensors"
accept $CMP --out $W/comp
cp -r $W/comp $W/comp.dense
accept $CMP --out $W/comp --routing topk:1
grep -q '"top_k": 1' $W/comp/adapter_config.json && ok || bad "compose over $W/comp did not write the new config"
cmp -s $W/comp/adapter_config.json $W/comp.dense/adapter_config.json && bad "adapter_config.json unchanged" || ok
[ "$(ls -A $W/comp)" = "$(printf 'adapter_config.json\nadapter_model.safetensors')" ] && ok \
    || bad "$W/comp holds $(ls -A $W/comp)"
no_temp $W
accept $B inspect $W/comp
echo notes >$W/comp/notes.txt && cp $W/comp/adapter_config.json $W/comp_cfg.orig
refuse "compose: --out $W/comp holds notes.txt, which compose does not write" $CMP --out $W/comp
same $W/comp/adapter_config.json $W/comp_cfg.orig
[ -f $W/comp/notes.txt ] && ok || bad "$W/comp/notes.txt removed"
no_temp $W
refuse "compose: --out $W/y.orig is not a directory" $CMP --out $W/y.orig
refuse "compose: --out $W/nodir/c: cannot create a temporary directory beside it: No such file or directory" $CMP \
    --out $W/nodir/c

# ---- a successful rewrite: through a symlink to the file it names, the target's mode kept
cp $W/y.orig $W/real.npy && chmod 640 $W/real.npy && ln -s real.npy $W/link.npy
accept $B forward $F/molora --module $M --input $F/x.npy --output $W/link.npy --mask 1
[ -L $W/link.npy ] && ok || bad "the symlink $W/link.npy was replaced by a file"
[ "$(stat -c %a $W/real.npy)" = 640 ] && ok || bad "mode of $W/real.npy is $(stat -c %a $W/real.npy), want 640"
cmp -s $W/real.npy $W/y.orig && bad "$W/real.npy not rewritten through the symlink" || ok
no_temp $W

# ---- what inspect and alpha print must reach stdout: a redirect to a full device or past a size limit is an error
if [ -w /dev/full ]; then
    refuse "standard output: write failed: No space left on device" sh \
        -c 'exec "$0" "$@" >/dev/full' $B inspect $F/molora --json
    refuse "standard output: write failed: No space left on device" sh \
        -c 'exec "$0" "$@" >/dev/full' $B alpha $F/alpha_model --json
else
    skip "10_writes: no writable /dev/full: the stdout-error cases not run"
fi
refuse "standard output: write failed: File too large" sh -c 'ulimit -f 1; exec "$0" "$@" >'"$W/alpha.json" $B alpha \
    $F/alpha_model --json
