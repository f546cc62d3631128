# .npy inputs that lie (sourced by tests/test_hostile.sh): a key given twice, which numpy reads
# keeping the last value, a shape far larger than the file, and a FIFO that would block open().
# Each must be refused with one stderr line naming the lie, and leave an existing output intact.
D=$T/20_npy
mkdir -p $D
# npy_file PATH DICT DATA_BYTES: a format 1.0 file with DICT as its header (padded as np.save pads)
npy_file() {
    python3 -c 'import struct, sys
d = sys.argv[2].encode("latin1")
h = d + b" " * (63 - (10 + len(d)) % 64) + b"\n"
open(sys.argv[1], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h +
                              b"\0" * int(sys.argv[3]))' "$1" "$2" "$3"
}
fwd_npy() { $B forward $F/molora --module model.layers.0.self_attn.k_proj --input "$1" --output $D/y.npy; }
printf 'old output\n' >$D/y.npy
cp $D/y.npy $D/y_before

npy_file $D/ok.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }" 60
accept fwd_npy $D/ok.npy                      # control: the same writer, an honest header
printf 'old output\n' >$D/y.npy

npy_file $D/fortran_twice.npy "{'descr': '<f4', 'fortran_order': False, 'fortran_order': True, 'shape': (5, 3), }" 60
want="fortran_twice.npy: header: key 'fortran_order' given twice"
refuse "$want (numpy would keep the last one; refused as a lying header)" fwd_npy $D/fortran_twice.npy
same $D/y.npy $D/y_before

npy_file $D/shape_twice.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), 'shape': (5, 3), }" 60
refuse "shape_twice.npy: header: key 'shape' given twice" fwd_npy $D/shape_twice.npy
same $D/y.npy $D/y_before

npy_file $D/huge.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (16777216, 16777216), }" 60
want="huge.npy: data size does not match shape (16777216, 16777216)"
refuse "$want: it needs 1125899906842624 bytes, the file has 60 after the header" fwd_npy $D/huge.npy
same $D/y.npy $D/y_before

if mkfifo $D/fifo 2>/dev/null; then
    refuse "fifo: a FIFO, not a regular file" timeout 10 $B forward $F/molora --module model.layers.0.self_attn.k_proj \
        --input $D/fifo --output $D/y.npy
    same $D/y.npy $D/y_before
else skip "20_npy: mkfifo failed, FIFO input not tried"; fi

# the test-side reader (tests/npy_close.py) compares descr, fortran_order and shape, not only values
close_differs() { # SUBSTRING GOT WANT
    if python3 tests/npy_close.py "$2" "$3" >/dev/null 2>$D/close_err; then bad "npy_close.py accepted $2 against $3"
    elif grep -q -- "$1" $D/close_err; then ok; else bad "npy_close.py $2 $3: $(cat $D/close_err)"; fi
}
accept python3 tests/npy_close.py $D/ok.npy $D/ok.npy
npy_file $D/t53.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }" 60
close_differs "shape (5, 3) != (3, 5)" $D/t53.npy $D/ok.npy
close_differs "descr '<f4' fortran_order True, want '<f4' and False" $F/x_fortran.npy $F/x.npy
close_differs "descr '<f8' fortran_order False" $F/x_f64.npy $F/x.npy
close_differs "header keys" $D/shape_twice.npy $D/ok.npy
npy_file $D/short.npy "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }" 56
close_differs "56 data bytes for shape (3, 5) (want 60)" $D/short.npy $D/ok.npy
