# forward --output Y --weights-out W commits the pair together (issue 12): both are written to
# temporary files and renamed only when both are complete, so a failure writing either leaves
# both old files byte-identical, no temporary file, exit non-zero and one stderr line.
P=$T/12_pair
mkdir -p $P
M=model.layers.0.self_attn.k_proj
FWD="$B forward $F/molora --module $M"
# the old pair comes from --mask 1, so a replaced file would differ from its copy
old_pair() { # DIR_Y DIR_W
    accept $FWD --input $F/x.npy --output $1/y.npy --weights-out $2/w.npy --mask 1
    cp $1/y.npy $P/y.orig && cp $2/w.npy $P/w.orig
}
pair_intact() { same $1/y.npy $P/y.orig; same $2/w.npy $P/w.orig; no_temp $1; no_temp $2; }

# ---- both complete: both replaced
old_pair $P $P
accept $FWD --input $F/x.npy --output $P/y.npy --weights-out $P/w.npy
cmp -s $P/y.npy $P/y.orig && bad "$P/y.npy not replaced" || ok
cmp -s $P/w.npy $P/w.orig && bad "$P/w.npy not replaced" || ok
no_temp $P

# ---- W cannot be created (its directory is missing) after Y was written: Y stays old
old_pair $P $P
refuse "$P/nodir/w.npy: the directory $P/nodir does not exist" $FWD --input $F/x.npy --output $P/y.npy \
    --weights-out $P/nodir/w.npy
pair_intact $P $P

# ---- a file-size limit that Y (5000 x 4 floats, 80 KB) exceeds and W (5000 x 3, 60 KB) fits
python3 -c "
import struct, sys
T, d = 5000, 5
h = \"{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }\" % (T, d)
h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() +
                              struct.pack('<%df' % (T * d), *([0.25] * (T * d))))
" $P/mid.npy
old_pair $P $P
refuse "y.npy: write failed: File too large" sh -c 'ulimit -f 64; exec "$0" "$@"' $FWD --input $P/mid.npy \
    --output $P/y.npy --weights-out $P/w.npy
pair_intact $P $P

# ---- a full file system (root: a 16 KB tmpfs) under W while Y fits on disk, then under Y
mkdir -p $P/mnt
if mount -t tmpfs -o size=16k tmpfs $P/mnt 2>/dev/null; then
    old_pair $P $P/mnt
    dd if=/dev/zero of=$P/mnt/fill bs=1024 count=64 2>/dev/null
    refuse "mnt/w.npy: write failed: No space left on device" $FWD --input $F/x.npy --output $P/y.npy \
        --weights-out $P/mnt/w.npy
    pair_intact $P $P/mnt
    rm -f $P/mnt/fill $P/mnt/w.npy
    old_pair $P/mnt $P
    dd if=/dev/zero of=$P/mnt/fill bs=1024 count=64 2>/dev/null
    refuse "mnt/y.npy: write failed: No space left on device" $FWD --input $F/x.npy --output $P/mnt/y.npy \
        --weights-out $P/w.npy
    pair_intact $P/mnt $P
    umount $P/mnt
else
    skip "12_pair: mount -t tmpfs failed (not root, or no CAP_SYS_ADMIN): full-disk cases not run"
fi
