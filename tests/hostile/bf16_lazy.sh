# Cost bounded by use: a 1 GiB BF16 adapter (sparse file: header + holes) is inspected without
# converting anything (v0.1 converted every module to float32: 5.2 GB peak RSS), and forward
# converts only the module it runs. RSS is asserted only in a plain build (sanitizers inflate it).
lz=$T/bf16_lazy
mkdir -p $lz
python3 tests/hostile/bf16_lazy.py $lz
case $B in */asan/*|*/ubsan/*|*/tsan/*|*/msan/*) lz_plain=0 ;; *) lz_plain=1 ;; esac
lz_rss() { python3 tests/hostile/bf16_lazy.py --rss "$@" 2>$T/err; }   # prints KiB, exit = CMD's
if kb=$(lz_rss $B inspect $lz/adapter); then ok; else bad "inspect of the 1 GiB BF16 adapter: $(cat $T/err)"; fi
figure "inspect of a 1 GiB BF16 adapter (256 modules, sparse file): peak RSS $((kb / 1024)) MiB"
if [ $lz_plain = 0 ]; then skip "RSS bound of inspect (sanitizer build)"
elif [ "$kb" -lt 102400 ]; then ok; else bad "inspect peak RSS $kb KiB >= 100 MiB"; fi
if kb=$(lz_rss $B forward $lz/adapter --module model.layers.63.self_attn.o_proj --input $lz/x.npy --output $lz/y.npy); \
    then ok
else bad "forward on one module of the 1 GiB BF16 adapter: $(cat $T/err)"; fi
figure "forward of one module (r 256, 4096 x 4096) of that adapter: peak RSS $((kb / 1024)) MiB"
if [ $lz_plain = 0 ]; then skip "RSS bound of forward (sanitizer build)"
elif [ "$kb" -lt 102400 ]; then ok; else bad "forward peak RSS $kb KiB >= 100 MiB"; fi
rm -rf $lz
