# --read (MOLORA_LOAD_READ: files read into memory, not mapped) gives the same results as the
# mapping in every command that loads, and like every switch it may be given once.
R=$T/13_read
mkdir -p $R
M=model.layers.0.self_attn.k_proj
# same_out NAME CMD...: stdout of CMD and of CMD --read byte-identical
same_out() {
    name=$1; shift
    "$@" >$R/$name.map 2>$R/err && "$@" --read >$R/$name.read 2>>$R/err && cmp -s $R/$name.map $R/$name.read && [ \
        -s $R/$name.map ] && ok ||
        bad "'$* --read' differs from the mapped run: $(head -c 300 $R/err)"
}
same_out inspect $B inspect $F/mola --json
same_out alpha $B alpha $F/alpha_model --json
accept $B forward $F/molora --module $M --input $F/x.npy --output $R/y.map.npy --weights-out $R/w.map.npy --base $F/base
accept $B forward $F/molora --module $M --input $F/x.npy --output $R/y.read.npy --weights-out $R/w.read.npy \
    --base $F/base --read
same $R/y.map.npy $R/y.read.npy
same $R/w.map.npy $R/w.read.npy
CMP="$B compose --expert $F/compose_e0 --expert $F/compose_e1 --gate $F/compose_gate.safetensors"
accept $CMP --out $R/c.map
accept $CMP --out $R/c.read --read
same $R/c.map/adapter_model.safetensors $R/c.read/adapter_model.safetensors
same $R/c.map/adapter_config.json $R/c.read/adapter_config.json
refuse "inspect: --read given twice" $B inspect $F/mola --read --read
refuse "alpha: --read given twice" $B alpha $F/alpha_model --read --read
refuse "forward: --read given twice" $B forward $F/molora --module $M --input $F/x.npy --output $R/y2.npy --read --read
refuse "compose: --read given twice" $CMP --out $R/c2 --read --read
[ ! -e $R/y2.npy ] && [ ! -e $R/c2 ] && ok || bad "an output was written although --read was given twice"
