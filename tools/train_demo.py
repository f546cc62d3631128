#!/usr/bin/python3
"""Train the engine demo's tiny byte-level Llama-style model and its AdaMoLE adapter (issue 8).

Run with Debian's torch (CPU), from any directory:
  /usr/bin/python3 tools/train_demo.py [outdir]          base + AdaMoLE + parity logits (~26 min)
  /usr/bin/python3 tools/train_demo.py --parity [outdir] only re-export the parity logits
  /usr/bin/python3 tools/train_demo.py --mole [outdir]   then: three domain LoRAs + a dense MoLE (~12 min)
                                                         gate on the saved base, composed with
                                                         build/molora compose (make build/molora)
  /usr/bin/python3 tools/train_demo.py --mola [outdir]   then: MoLA top-k whose expert counts per
                                                         layer come from build/molora alpha (~10 min)
  /usr/bin/python3 tools/train_demo.py --mix [outdir]    then: the two mixed held-out texts, an X-LoRA
                                                         classifier over the three LoRAs (domain labels,
                                                         then X-LoRA's LM loss through pass 2), the Arrow
                                                         composition (build/molora compose), and the
                                                         bits/byte table of every mixture (~25 min)
  /usr/bin/python3 tools/train_demo.py --mix-try=WHAT [outdir]   then: one attempt at the pure-domain goal, on
                                                         one torch thread, reported in train_log.txt and
                                                         never the demo's choice (--mix's files untouched):
      mole_output      the MoLE paper's output gate (Eq. 9-11, molora's mole_output rule) trained by the LM
                       loss; writes <outdir>/mole_output (~10 min; DEMO_MOLE_OUT='{"lr": 0.1}' overrides
                       MOLE_OUT, e.g. "balance" for the paper's gating balance loss)
      xlora_layerwise  X-LoRA with PEFT's layerwise_scalings, domain then LM stage; <outdir>/xlora_layerwise
                       (~11 min)
      mole_diag        the dense MoLE gate of --mole: its weights, their entropy, the plain average (~1 min)
      parity           only logits.mole_output / logits.xlora_layerwise from the exported files
  DEMO_SMOKE=1 ...                                       3 steps per stage: checks the script only
  DEMO_THREADS=1 ...                                     --mix on 1 torch thread (a shared machine)
Default outdir: examples/demo_model.  Nothing is downloaded: the training text is read from files
every Debian 12 machine with python3.11 and libc6-dev has (the exact lists are TRAIN_FILES and
EVAL_FILES below, and are written to <outdir>/files.txt).

Writes:
  examples/demo_data/{prose,c,python}.txt   held-out evaluation text (EVAL_BYTES per domain, from
                                            files that are NOT in the training lists, starting at
                                            EVAL_START: past a header's license comment or a
                                            module's docstring)
  <outdir>/base.safetensors                 the base model, HF Llama tensor names, config in
                                            __metadata__
  <outdir>/adamole/adapter_config.json      AdaMoLE (peft_type ADAMOLE) on q/k/v/o of every layer
  <outdir>/adamole/adapter_model.safetensors
  <outdir>/parity.safetensors               prompts (U8) and the PyTorch logits the C engine must
                                            reproduce: logits.base, logits.adamole, and after
                                            --mole logits.lora_{prose,c,python}, logits.mole
  <outdir>/lora_{prose,c,python}/           PEFT LoRA (r 8, alpha 16) on q/k/v/o, one domain each
  <outdir>/mole/                            molora compose of the three, routing dense
  <outdir>/mola/                            MoLA layout (lora_A_{i}, router.router), logits.mola
  examples/demo_data/mixed_{select,report}.txt   (--mix) held-out text mixing the domains: prose,
                                            then C, then Python; settings are chosen on the first only
  <outdir>/xlora/                           (--mix) PEFT's X-LoRA layout over ../lora_{prose,c,python}
  <outdir>/arrow/                           (--mix) molora compose --routing arrow:K:T of the three
  <outdir>/mix_table.json                   (--mix) the bits/byte table and the chosen settings
  <outdir>/mole_output/                     (--mix-try=mole_output) molora's layout, routing mole_output
  <outdir>/xlora_layerwise/                 (--mix-try=xlora_layerwise) PEFT's X-LoRA layout, layer-wise
  <outdir>/train_log.txt                    losses, timings, bits per byte (PyTorch)
Every file goes through write_file: a temporary file beside the target, written in full and fsync'd,
then renamed over it (an interrupted run leaves the old file, never half of a new one).

The AdaMoLE forward is molora's ADAMOLE rule (zefang-liu/AdaMoLE src/adamole/layer.py); the training loss adds the
load-balancing loss. Seeds are fixed; torch runs on 2 threads.
"""
import json, math, os, re, struct, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = next((a for a in sys.argv[1:] if not a.startswith("--")), os.path.join(ROOT, "examples", "demo_model"))
DATA = os.path.join(ROOT, "examples", "demo_data")

# ---- data -------------------------------------------------------------------------------------
LIC = "/usr/share/common-licenses/"
INC = "/usr/include/"
PY = "/usr/lib/python3.11/"
TRAIN_FILES = {
    # every license text Debian ships except LGPL-3, which is held out
    "prose": [LIC + f for f in ["GPL-3", "GPL-2", "GPL-1", "LGPL-2.1", "LGPL-2", "Apache-2.0", "MPL-2.0",
                                "MPL-1.1", "Artistic", "GFDL-1.3", "GFDL-1.2", "CC0-1.0", "BSD"]],
    # glibc's own headers (libc6-dev, which gcc pulls in): every Debian machine that builds C has them
    "c": [INC + f for f in ["stdio.h", "stdlib.h", "string.h", "unistd.h", "signal.h", "pthread.h",
                            "fcntl.h", "math.h", "time.h", "wchar.h", "locale.h", "sched.h", "netdb.h",
                            "regex.h", "argp.h", "obstack.h", "features.h", "langinfo.h", "thread_db.h",
                            "dlfcn.h", "fts.h", "ctype.h", "inttypes.h", "stdint.h", "elf.h", "glob.h",
                            "search.h", "wordexp.h", "spawn.h", "poll.h", "termios.h", "utmp.h"]],
    "python": [PY + f for f in ["argparse.py", "subprocess.py", "textwrap.py", "shutil.py",
                                "tempfile.py", "configparser.py", "calendar.py", "fractions.py",
                                "threading.py", "dataclasses.py", "functools.py", "enum.py", "pathlib.py",
                                "difflib.py", "datetime.py", "ipaddress.py", "tarfile.py", "zipfile.py",
                                "ast.py", "pprint.py", "random.py", "socketserver.py", "sched.py"]],
}
# Held-out text: EVAL_BYTES from a file that is in no training list, starting at the first line that
# matches EVAL_START (past the license comment of a C header, past a module's docstring), so each
# snippet is typical of its domain rather than of a file header.
EVAL_FILES = {"prose": LIC + "LGPL-3", "c": INC + "dirent.h", "python": PY + "contextlib.py"}
EVAL_START = {"prose": rb"", "c": rb"(?m)^#", "python": rb"(?m)^(class|def) "}
EVAL_BYTES = 4096
DOMAINS = ["prose", "c", "python"]

# ---- model config -----------------------------------------------------------------------------
CFG = dict(vocab=256, dim=128, n_layers=4, n_heads=4, hidden=352, seq_len=128, rope_theta=10000.0,
           norm_eps=1e-5)
ADA = dict(num_experts=4, lora_rank=8, lora_alpha=16.0, aux_coeff=1e-2)
BASE_STEPS, ADA_STEPS, BATCH = 1600, 500, 32
if os.environ.get("DEMO_SMOKE"):   # check the script end to end in seconds (useless model)
    BASE_STEPS, ADA_STEPS = 3, 3


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data):
    """Every file this script writes goes through here: bytes (or str, as UTF-8) to a temporary file
    beside path, written in full, fsync'd, then renamed over path (a failed or interrupted write
    leaves the old file, and nothing is read back from a half-written one)."""
    import tempfile
    data = data.encode() if isinstance(data, str) else bytes(data)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        um = os.umask(0)
        os.umask(um)
        os.chmod(tmp, 0o666 & ~um)                       # mkstemp's 0600 is no mode for a committed file
        with os.fdopen(fd, "wb") as f:
            if f.write(data) != len(data):
                raise OSError(f"{path}: short write")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path, obj, **kw):
    write_file(path, json.dumps(obj, **kw))


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, hd, theta):
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)      # [T, hd/2]
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    # HF Llama convention (rotate_half): pairs (i, i + hd/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class AdaMoLE(nn.Module):
    """AdaMoLE's forward (src/adamole/layer.py) around a frozen nn.Linear; records routing for the tie check."""

    def __init__(self, base, n, r, alpha):
        super().__init__()
        self.base, self.n, self.s = base, n, alpha / r
        d_in, d_out = base.in_features, base.out_features
        self.A = nn.ParameterList([nn.Parameter(torch.empty(r, d_in)) for _ in range(n)])
        self.B = nn.ParameterList([nn.Parameter(torch.zeros(d_out, r)) for _ in range(n)])
        for a in self.A:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.gate = nn.Linear(d_in, n, bias=False)
        self.thr = nn.Linear(d_in, 1)
        self.tau_max = 1.0 / n
        self.aux = None
        self.record = None

    def forward(self, x):
        p = F.softmax(self.gate(x), dim=-1)
        tau = torch.sigmoid(self.thr(x)) * self.tau_max
        a = p - tau
        sel = (a >= 0).to(x.dtype)
        u = a * sel
        S = u.sum(-1, keepdim=True)
        S = torch.where(S == 0, torch.ones_like(S), S)
        w = u / S
        if self.record is not None:
            self.record.append(a.detach().reshape(-1, self.n))
        if x.requires_grad or torch.is_grad_enabled():
            f = sel.reshape(-1, self.n).mean(0)
            P = a.reshape(-1, self.n).mean(0)
            self.aux = self.n * (f * P).sum()
        y = self.base(x)
        for i in range(self.n):
            y = y + w[..., i:i + 1] * (self.s * F.linear(F.linear(x, self.A[i]), self.B[i]))
        return y


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["dim"], c["dim"] // c["n_heads"]
        self.nh, self.hd = c["n_heads"], hd
        self.input_layernorm = RMSNorm(d, c["norm_eps"])
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.post_attention_layernorm = RMSNorm(d, c["norm_eps"])
        self.gate_proj = nn.Linear(d, c["hidden"], bias=False)
        self.up_proj = nn.Linear(d, c["hidden"], bias=False)
        self.down_proj = nn.Linear(c["hidden"], d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        o = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o_proj(o)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c["vocab"], c["dim"])
        self.layers = nn.ModuleList([Block(c) for _ in range(c["n_layers"])])
        self.norm = RMSNorm(c["dim"], c["norm_eps"])
        self.lm_head = nn.Linear(c["dim"], c["vocab"], bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        cos, sin = rope_tables(T, self.c["dim"] // self.c["n_heads"], self.c["rope_theta"])
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        x = self.embed(idx)
        for b in self.layers:
            x = b(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


# ---- safetensors writer (F32 / U8, header padded to 8 bytes so F32 data is aligned) ------------
def save_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float32:
            dt, raw = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.uint8:
            dt, raw = "U8", t.numpy().tobytes()
        else:
            raise ValueError(t.dtype)
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    write_file(path, b"".join([struct.pack("<Q", len(h)), h] + blobs))


def base_tensors(m):
    out = {"model.embed_tokens.weight": m.embed.weight}
    for L, b in enumerate(m.layers):
        p = f"model.layers.{L}."
        out[p + "input_layernorm.weight"] = b.input_layernorm.weight
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            lin = getattr(b, n)
            lin = lin.base if isinstance(lin, AdaMoLE) else lin
            out[p + f"self_attn.{n}.weight"] = lin.weight
        out[p + "post_attention_layernorm.weight"] = b.post_attention_layernorm.weight
        for n in ["gate_proj", "up_proj", "down_proj"]:
            out[p + f"mlp.{n}.weight"] = getattr(b, n).weight
    out["model.norm.weight"] = m.norm.weight
    out["lm_head.weight"] = m.lm_head.weight
    return out


def batches(corpus, gen, steps, T):
    # equal share of every domain in each batch
    for _ in range(steps):
        rows = []
        for j in range(BATCH):
            buf = corpus[DOMAINS[j % 3]]
            s = int(torch.randint(0, len(buf) - T - 1, (1,), generator=gen))
            rows.append(buf[s:s + T + 1])
        yield torch.stack(rows)


@torch.no_grad()
def bits_per_byte(m, data, T):
    """Non-overlapping windows of T bytes; each window predicts its bytes 1..T-1 (as the engine)."""
    tot, n = 0.0, 0
    for s in range(0, len(data) - 1, T):
        w = data[s:s + T]
        if len(w) < 2:
            break
        logits = m(w[None].long())[0, :-1]
        tot += F.cross_entropy(logits, w[1:].long(), reduction="sum").item()
        n += len(w) - 1
    return tot / n / math.log(2)


def lr_at(lr, step, steps):
    """linear warm-up over the first 5% of the steps, then cosine decay to zero"""
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def train(m, params, corpus, steps, lr, seed, aux_layers=None, log=None, aux_fn=None, aux_coeff=0.0):
    """AdamW on params; logs the mean training loss of every 100 steps (one batch is too noisy)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    T = m.c["seq_len"]
    run, nrun = 0.0, 0
    for step, xb in enumerate(batches(corpus, gen, steps, T)):
        for g in opt.param_groups:
            g["lr"] = lr_at(lr, step, steps)
        logits = m(xb[:, :-1].long())
        loss = F.cross_entropy(logits.reshape(-1, 256), xb[:, 1:].reshape(-1).long())
        total = loss
        if aux_layers:
            total = loss + ADA["aux_coeff"] * sum(l.aux for l in aux_layers)
        if aux_fn:
            total = loss + aux_coeff * aux_fn()
        opt.zero_grad()
        total.backward()
        opt.step()
        run, nrun = run + loss.item(), nrun + 1
        if (step + 1) % 100 == 0 or step == steps - 1:
            mean = run / nrun
            log(f"  steps {step + 1 - nrun:5d}..{step:5d}  mean loss {mean:.4f}  ({mean / math.log(2):.3f} bits/byte)")
            run, nrun = 0.0, 0


def open_log(mode):
    """a log function that prints and appends to <outdir>/train_log.txt (mode "w" starts it anew); each
    line rewrites the whole log through write_file (a few hundred lines at most), so it is never half written"""
    path = os.path.join(OUT, "train_log.txt")
    lines = [read(path).decode()] if mode == "a" and os.path.exists(path) else []

    def log(s):
        print(s, flush=True)
        lines.append(s + "\n")
        write_file(path, "".join(lines))
    return log


def load_texts():
    """the training text per domain, and the committed held-out text (written by main())"""
    corpus = {d: torch.tensor(list(b"\n".join(read(p) for p in TRAIN_FILES[d])), dtype=torch.uint8) for d in DOMAINS}
    evald = {d: torch.tensor(list(read(os.path.join(DATA, d + ".txt"))), dtype=torch.uint8) for d in DOMAINS}
    return corpus, evald


def bpb_line(m, evald):
    return "  ".join(f"{d} {bits_per_byte(m, evald[d], CFG['seq_len']):.4f}" for d in DOMAINS)


def main():
    torch.manual_seed(1234)
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(DATA, exist_ok=True)
    log = open_log("w")
    corpus, evald = {}, {}
    files = []
    for d in DOMAINS:
        raw = b"\n".join(read(p) for p in TRAIN_FILES[d])
        corpus[d] = torch.tensor(list(raw), dtype=torch.uint8)
        src = read(EVAL_FILES[d])
        start = re.search(EVAL_START[d], src).start()
        ev = src[start:start + EVAL_BYTES]
        write_file(os.path.join(DATA, d + ".txt"), ev)
        evald[d] = torch.tensor(list(ev), dtype=torch.uint8)
        files.append(f"[{d}] train ({len(raw)} bytes):\n" + "".join(f"  {p}\n" for p in TRAIN_FILES[d]))
        files.append(f"[{d}] held out: bytes {start}..{start + len(ev)} of {EVAL_FILES[d]}\n")
        log(f"{d}: {len(raw)} training bytes, held-out bytes {start}..{start + len(ev)} of {EVAL_FILES[d]}")
    write_file(os.path.join(OUT, "files.txt"), "".join(files))

    m = Model(CFG)
    log(f"base: {sum(p.numel() for p in m.parameters())} parameters, config {CFG}")
    t0 = time.time()
    train(m, m.parameters(), corpus, BASE_STEPS, 3e-3, 1, log=log)
    t_base = time.time() - t0
    log(f"base trained in {t_base:.1f} s")
    m.eval()
    log("base bits/byte (PyTorch): " + bpb_line(m, evald))
    meta = {k: str(v) for k, v in CFG.items()}
    meta["format"] = "molora-demo-llama"
    save_safetensors(os.path.join(OUT, "base.safetensors"), base_tensors(m), meta)

    # ---- AdaMoLE on q/k/v/o of every layer ----
    for p in m.parameters():
        p.requires_grad_(False)
    torch.manual_seed(99)
    ada = []
    for b in m.layers:
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            layer = AdaMoLE(getattr(b, n), ADA["num_experts"], ADA["lora_rank"], ADA["lora_alpha"])
            setattr(b, n, layer)
            ada.append(layer)
    params = [p for l in ada for p in l.parameters() if p.requires_grad]
    log(f"adamole: {sum(p.numel() for p in params)} trainable parameters, {ADA}")
    m.train()
    t0 = time.time()
    train(m, params, corpus, ADA_STEPS, 3e-3, 2, aux_layers=ada, log=log)
    t_ada = time.time() - t0
    log(f"adamole trained in {t_ada:.1f} s")
    m.eval()
    log("adamole bits/byte (PyTorch): " + bpb_line(m, evald))

    adir = os.path.join(OUT, "adamole")
    os.makedirs(adir, exist_ok=True)
    at = {}
    for L, b in enumerate(m.layers):
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            l = getattr(b, n)
            P = f"base_model.model.model.layers.{L}.self_attn.{n}"
            for i in range(l.n):
                at[f"{P}.lora_A.{i}.weight"] = l.A[i]
                at[f"{P}.lora_B.{i}.weight"] = l.B[i]
            at[f"{P}.lora_gating.weight"] = l.gate.weight
            at[f"{P}.lora_threshold.weight"] = l.thr.weight
            at[f"{P}.lora_threshold.bias"] = l.thr.bias
    save_safetensors(os.path.join(adir, "adapter_model.safetensors"), at)
    write_json(os.path.join(adir, "adapter_config.json"),
               {"peft_type": "ADAMOLE", "lora_rank": ADA["lora_rank"], "lora_alpha": ADA["lora_alpha"],
                "num_experts": ADA["num_experts"], "max_threshold": None, "lora_dropout": 0.0,
                "bias": "none", "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                "task_type": "CAUSAL_LM"}, indent=2, sort_keys=True)

    log(f"total training time {t_base + t_ada:.1f} s")
    export_parity(log)


def load_demo_model(with_adamole):
    """The base (and the AdaMoLE adapter) back from the exported files, so every later stage and the
    parity logits use exactly what the C engine reads."""
    m = Model(CFG)
    sd = load_safetensors(os.path.join(OUT, "base.safetensors"))
    for name, t in base_tensors(m).items():
        t.data.copy_(sd[name])
    ada = []
    if with_adamole:
        at = load_safetensors(os.path.join(OUT, "adamole", "adapter_model.safetensors"))
        for L, b in enumerate(m.layers):
            for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
                l = AdaMoLE(getattr(b, n), ADA["num_experts"], ADA["lora_rank"], ADA["lora_alpha"])
                P = f"base_model.model.model.layers.{L}.self_attn.{n}"
                for i in range(l.n):
                    l.A[i].data.copy_(at[f"{P}.lora_A.{i}.weight"])
                    l.B[i].data.copy_(at[f"{P}.lora_B.{i}.weight"])
                l.gate.weight.data.copy_(at[f"{P}.lora_gating.weight"])
                l.thr.weight.data.copy_(at[f"{P}.lora_threshold.weight"])
                l.thr.bias.data.copy_(at[f"{P}.lora_threshold.bias"])
                setattr(b, n, l)
                ada.append(l)
    m.eval()
    return m, ada


def export_parity(log):
    """Parity prompts: PROMPT_LEN-byte windows of each domain's held-out text, the first (in steps
    of PROMPT_LEN) on which every AdaMoLE routing decision is at least 1e-5 away from p == tau
    (a decision that close could flip between float orders of evaluation)."""
    PROMPT_LEN = 48
    base, _ = load_demo_model(False)
    m, ada = load_demo_model(True)
    chosen = []
    with torch.no_grad():
        for d in DOMAINS:
            ev = torch.tensor(list(read(os.path.join(DATA, d + ".txt"))), dtype=torch.uint8)
            for off in range(0, len(ev) - PROMPT_LEN, PROMPT_LEN):
                w = ev[off:off + PROMPT_LEN]
                for l in ada:
                    l.record = []
                m(w[None].long())
                amin = min(r.abs().min().item() for l in ada for r in l.record)
                if amin >= 1e-5:
                    chosen.append(w)
                    log(f"parity prompt {d}: held-out bytes {off}..{off + PROMPT_LEN}, smallest |p - tau| {amin:.3e}")
                    break
            else:
                raise SystemExit(f"{d}: every window has a routing decision within 1e-5 of a tie")
        for l in ada:
            l.record = None
        prompts = torch.stack(chosen)
        pt = {"prompts": prompts,
              "logits.base": torch.stack([base(prompts[j:j + 1].long())[0] for j in range(3)]),
              "logits.adamole": torch.stack([m(prompts[j:j + 1].long())[0] for j in range(3)])}
    save_safetensors(os.path.join(OUT, "parity.safetensors"), pt)


# ---- stage 2 (--mole): three domain LoRAs composed into a MoLE layer by `molora compose` ----------
MOLE = dict(r=8, lora_alpha=16.0, lora_steps=300, gate_steps=200)
if os.environ.get("DEMO_SMOKE"):
    MOLE.update(lora_steps=3, gate_steps=3)


def load_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": np.float32, "U8": np.uint8}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=dt).reshape(v["shape"]).copy())
    return out


class LoRA(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.s = base, alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def delta(self, x):
        return self.s * F.linear(F.linear(x, self.A), self.B)

    def forward(self, x):
        return self.base(x) + self.delta(x)


class MoLEDense(nn.Module):
    """molora's MOLORA layout, routing dense: y = W0 x + sum_i softmax(Wg x)_i s_i B_i A_i x"""

    def __init__(self, base, loras):
        super().__init__()
        self.base, self.loras = base, nn.ModuleList(loras)
        self.gate = nn.Linear(base.in_features, len(loras), bias=False)
        nn.init.zeros_(self.gate.weight)   # starts as the plain average of the experts

    def forward(self, x):
        p = F.softmax(self.gate(x), dim=-1)
        y = self.base(x)
        for i, l in enumerate(self.loras):
            y = y + p[..., i:i + 1] * l.delta(x)
        return y


def mole_stage():
    import subprocess
    torch.set_num_threads(2)
    log = open_log("a")
    corpus, evald = load_texts()
    m, _ = load_demo_model(False)
    for p in m.parameters():
        p.requires_grad_(False)
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    bases = {(L, n): getattr(b, n) for L, b in enumerate(m.layers) for n in names}
    experts = {}
    t0 = time.time()
    for j, d in enumerate(DOMAINS):
        torch.manual_seed(200 + j)
        loras = {}
        for (L, n), lin in bases.items():
            loras[(L, n)] = LoRA(lin, MOLE["r"], MOLE["lora_alpha"])
            setattr(m.layers[L], n, loras[(L, n)])
        params = [p for l in loras.values() for p in (l.A, l.B)]
        log(f"lora {d}: {sum(p.numel() for p in params)} parameters, {MOLE['lora_steps']} steps on {d} only")
        m.train()
        train(m, params, {x: corpus[d] for x in DOMAINS}, MOLE["lora_steps"], 3e-3, 10 + j, log=log)
        m.eval()
        log(f"lora {d} bits/byte (PyTorch): " + bpb_line(m, evald))
        ldir = os.path.join(OUT, "lora_" + d)
        os.makedirs(ldir, exist_ok=True)
        t = {}
        for (L, n), l in loras.items():
            P = f"base_model.model.model.layers.{L}.self_attn.{n}"
            t[P + ".lora_A.weight"], t[P + ".lora_B.weight"] = l.A, l.B
        save_safetensors(os.path.join(ldir, "adapter_model.safetensors"), t)
        write_json(os.path.join(ldir, "adapter_config.json"),
                   {"peft_type": "LORA", "r": MOLE["r"], "lora_alpha": MOLE["lora_alpha"], "use_rslora": False,
                    "bias": "none", "target_modules": names, "task_type": "CAUSAL_LM"}, indent=2, sort_keys=True)
        experts[d] = loras
    torch.manual_seed(300)
    moles = {}
    for (L, n), lin in bases.items():
        moles[(L, n)] = MoLEDense(lin, [experts[d][(L, n)] for d in DOMAINS])
        setattr(m.layers[L], n, moles[(L, n)])
    params = [l.gate.weight for l in moles.values()]
    for l in moles.values():
        for p in l.loras.parameters():
            p.requires_grad_(False)
    m.train()
    train(m, params, corpus, MOLE["gate_steps"], 1e-2, 20, log=log)
    m.eval()
    log("mole (gate only trained) bits/byte (PyTorch): " + bpb_line(m, evald))
    log(f"loras + mole gate trained in {time.time() - t0:.1f} s")
    gate = {f"model.layers.{L}.self_attn.{n}.lora_gating.weight": l.gate.weight for (L, n), l in moles.items()}
    gpath = os.path.join(OUT, "mole_gate.safetensors")
    save_safetensors(gpath, gate)
    rel = os.path.relpath(OUT, ROOT)   # the composed config records the expert paths: keep them relative
    cmd = ["build/molora", "compose"]
    for d in DOMAINS:
        cmd += ["--expert", os.path.join(rel, "lora_" + d)]
    cmd += ["--gate", os.path.join(rel, "mole_gate.safetensors"), "--out", os.path.join(rel, "mole"),
            "--routing", "dense"]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)
    os.remove(gpath)
    pt = load_safetensors(os.path.join(OUT, "parity.safetensors"))
    prompts = pt["prompts"]
    with torch.no_grad():
        pt["logits.mole"] = torch.stack([m(prompts[j:j + 1].long())[0] for j in range(3)])
        for d in DOMAINS:                       # each plain LoRA alone
            for (L, n), l in experts[d].items():
                setattr(m.layers[L], n, l)
            pt["logits.lora_" + d] = torch.stack([m(prompts[j:j + 1].long())[0] for j in range(3)])
    save_safetensors(os.path.join(OUT, "parity.safetensors"), pt)


# ---- stage 3 (--mola): MoLA top-k with per-layer expert counts from `molora alpha` --------------
MOLA = dict(budget=16, r=8, lora_alpha=16.0, steps=400, aux_coeff=1e-3)
if os.environ.get("DEMO_SMOKE"):
    MOLA.update(steps=3)


class MoLATopK(nn.Module):
    """AlphaLoRA's MoLA routing: p = softmax(Wr x); top-k; w = v / sum v (lower index wins ties)."""

    def __init__(self, base, n, k, r, alpha):
        super().__init__()
        self.base, self.n, self.k, self.s = base, n, k, alpha / r
        self.A = nn.ParameterList([nn.Parameter(torch.empty(r, base.in_features)) for _ in range(n)])
        self.B = nn.ParameterList([nn.Parameter(torch.zeros(base.out_features, r)) for _ in range(n)])
        for a in self.A:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.router = nn.Linear(base.in_features, n, bias=False)
        self.last = None
        self.record = None

    def forward(self, x):
        p = F.softmax(self.router(x).float(), dim=-1)
        v, idx = torch.topk(p, self.k, dim=-1)
        w = torch.zeros_like(p).scatter(-1, idx, v / v.sum(-1, keepdim=True))
        self.last = (p.reshape(-1, self.n), idx.reshape(-1, self.k))
        if self.record is not None and self.k < self.n:   # gap between the k-th and (k+1)-th prob
            srt = torch.sort(p.reshape(-1, self.n), dim=-1, descending=True).values
            self.record.append((srt[:, self.k - 1] - srt[:, self.k]).detach())
        y = self.base(x)
        for i in range(self.n):
            y = y + w[..., i:i + 1] * (self.s * F.linear(F.linear(x, self.A[i]), self.B[i]))
        return y


def mola_stage():
    import subprocess
    torch.set_num_threads(2)
    log = open_log("a")

    rel = os.path.relpath(OUT, ROOT)
    cmd = ["build/molora", "alpha", os.path.join(rel, "base.safetensors"), "--budget", str(MOLA["budget"]),
           "--prefix", "model.", "--json"]
    log("$ " + " ".join(cmd))
    plan = json.loads(subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True).stdout)["layers"]
    experts = [l["experts"] for l in plan]
    top_k = [l["top_k"] for l in plan]
    log(f"molora alpha (fix_finger, budget {MOLA['budget']}): layer alpha " +
        " ".join(f"{l['alpha']:.3f}" for l in plan) + f" -> experts {experts}, top_k {top_k}")
    corpus, evald = load_texts()
    m, _ = load_demo_model(False)
    for p in m.parameters():
        p.requires_grad_(False)
    torch.manual_seed(400)
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    mods = {}
    for L, b in enumerate(m.layers):
        for n in names:
            mods[(L, n)] = MoLATopK(getattr(b, n), experts[L], top_k[L], MOLA["r"], MOLA["lora_alpha"])
            setattr(b, n, mods[(L, n)])
    params = [p for l in mods.values() for p in l.parameters() if p.requires_grad]
    log(f"mola: {sum(p.numel() for p in params)} trainable parameters, {MOLA}")

    def aux():   # AlphaLoRA's aux loss: per decoder layer, the routed projections' logits concatenated
        tot = 0.0
        for L in range(len(m.layers)):
            ps = torch.cat([mods[(L, n)].last[0] for n in names])
            ids = torch.cat([mods[(L, n)].last[1] for n in names]).reshape(-1)
            N = experts[L]
            f = torch.bincount(ids, minlength=N).float() / ids.numel()
            tot = tot + N * (f * ps.mean(0)).sum()
        return tot

    t0 = time.time()
    m.train()
    train(m, params, corpus, MOLA["steps"], 3e-3, 30, log=log, aux_fn=aux, aux_coeff=MOLA["aux_coeff"])
    m.eval()
    log(f"mola trained in {time.time() - t0:.1f} s")
    log("mola bits/byte (PyTorch): " + bpb_line(m, evald))
    mdir = os.path.join(OUT, "mola")
    os.makedirs(mdir, exist_ok=True)
    t = {}
    for (L, n), l in mods.items():
        P = f"base_model.model.model.layers.{L}.self_attn.{n}"
        for i in range(l.n):
            t[f"{P}.lora_A_{i}.weight"], t[f"{P}.lora_B_{i}.weight"] = l.A[i], l.B[i]
        t[f"{P}.router.router.weight"] = l.router.weight
    save_safetensors(os.path.join(mdir, "adapter_model.safetensors"), t)
    write_json(os.path.join(mdir, "adapter_config.json"),
               {"peft_type": "LORA", "r": MOLA["r"], "lora_alpha": MOLA["lora_alpha"], "number_experts": experts,
                "top_k": top_k, "bias": "none", "target_modules": names, "task_type": "CAUSAL_LM"},
               indent=2, sort_keys=True)
    pt = load_safetensors(os.path.join(OUT, "parity.safetensors"))
    prompts = pt["prompts"]
    with torch.no_grad():
        for l in mods.values():
            l.record = []
        pt["logits.mola"] = torch.stack([m(prompts[j:j + 1].long())[0] for j in range(3)])
        gap = min(r.min().item() for l in mods.values() for r in l.record)
    log(f"parity prompts: smallest top-k gap (k-th minus (k+1)-th probability) {gap:.3e}")
    if gap < 1e-5:
        raise SystemExit("a MoLA top-k decision sits within 1e-5 of a tie on the parity prompts")
    save_safetensors(os.path.join(OUT, "parity.safetensors"), pt)


# ---- stage 4 (--mix): PEFT's mixtures of the three domain LoRAs on mixed held-out text (issue 15) ----
# Two held-out texts that mix the domains: each is three consecutive pieces, prose then C then Python,
# from files (or byte ranges) that are in no training list and overlap none of the pure held-out
# texts. MIX_SELECT chooses every setting; MIX_REPORT plays no part in any choice and is reported.
MIX_PIECES = {
    "mixed_select": [(LIC + "LGPL-3", 4096, rb""), (INC + "grp.h", 0, rb"(?m)^#"),
                     (PY + "copy.py", 0, rb"(?m)^(class|def) ")],
    "mixed_report": [(LIC + "LGPL-3", 4096 + 1365, rb""), (INC + "aio.h", 0, rb"(?m)^#"),
                     (PY + "heapq.py", 0, rb"(?m)^def ")],
}
MIX_TEXTS = list(MIX_PIECES)
XLORA = dict(xlora_depth=2, xlora_size=64, xlora_dropout_p=0.0, layerwise_scalings=False, rows=1500, steps=1000,
             lr=3e-3, switch_rows=0.5, lm_steps=300, lm_lr=1e-3, lm_batch=16)
VAL_WINDOWS = 24   # pure windows per domain from the last 5% of its training text (no classifier trains on them)
if os.environ.get("DEMO_SMOKE"):
    XLORA.update(rows=32, steps=3, lm_steps=2)
ARROW_GRID = [(1, 1.0)] + [(k, t) for k in (2, 3) for t in (0.5, 1.0, 2.0)]   # (T does nothing at k = 1)
XLORA_TEMPS = [0.25, 0.5, 1.0]


def mixed_text(name):
    """three pieces of EVAL_BYTES // 3 bytes (the last one takes the rest)"""
    out, n = b"", EVAL_BYTES // 3
    for j, (path, skip, start) in enumerate(MIX_PIECES[name]):
        b = read(path)[skip:]
        m = re.search(start, b)
        b = b[m.start():] if m else b
        out += b[:n if j < 2 else EVAL_BYTES - 2 * n]
    return out


class Mix(nn.Module):
    """One attention projection with the three domain LoRAs and every way of mixing them:
    mode "base", ("lora", i), ("mole", Wg), ("arrow", k, T) with exact prototypes (the top right
    singular vector of B_i A_i, as molora computes them), "xlora" (per-token weights set in self.w)."""

    def __init__(self, base, loras):
        super().__init__()
        self.base = base
        self.A = [l[0] for l in loras]
        self.B = [l[1] for l in loras]
        self.s = MOLE["lora_alpha"] / MOLE["r"]
        P = []
        for A, B in zip(self.A, self.B):
            _, _, vt = torch.linalg.svd((B.double() @ A.double()))
            P.append(vt[0].float())
        self.P = torch.stack(P)
        self.mode, self.w, self.record = "base", None, None

    def weights(self, x):
        m = self.mode
        if m[0] == "lora":
            w = torch.zeros(*x.shape[:-1], len(self.A))
            w[..., m[1]] = 1.0
            return w
        if m[0] == "mole":
            return F.softmax(F.linear(x, m[1]), dim=-1)
        if m[0] == "arrow":                         # PEFT's arrow.py:248-254
            z = F.linear(x, self.P).abs()
            v, idx = torch.topk(z, m[1], dim=-1)
            return torch.zeros_like(z).scatter(-1, idx, F.softmax(v / m[2], dim=-1))
        return self.w                               # xlora: PEFT's layer.py:97-131, gsw 1

    def deltas(self, x):
        return [self.s * F.linear(F.linear(x, A), B) for A, B in zip(self.A, self.B)]

    def forward(self, x):
        y = self.base(x)
        if self.mode == "base":
            return y
        if self.mode[0] == "mole_output":            # the MoLE paper's gate on the deltas themselves
            D = self.deltas(x)
            w = mole_output_weights(D, self.mode[1], self.mode[2])
            self.w = w
            if self.record is not None:
                self.record.append(w.detach().reshape(-1, len(self.A)))
            for i, d in enumerate(D):
                y = y + w[..., i:i + 1] * d
            return y
        w = self.weights(x)
        if self.record is not None:
            self.record.append(w.detach().reshape(-1, len(self.A)))
        for i, (A, B) in enumerate(zip(self.A, self.B)):
            y = y + w[..., i:i + 1] * (self.s * F.linear(F.linear(x, A), B))
        return y


def mole_output_weights(D, e, temperature):
    """MoLE paper Eq. 9-11 in molora's MOLE_OUTPUT form (docs/maths.md): the experts' deltas D_i
    concatenated, L2-normalised (F.normalize, as the official code), eps = e^T E, softmax(eps / T)"""
    E = F.normalize(torch.cat(D, dim=-1), dim=-1, eps=1e-12)
    return F.softmax(F.linear(E, e) / temperature, dim=-1)


class XLoraClassifier(nn.Module):
    """PEFT's XLoraClassifier (peft/tuners/xlora/classifier.py:72-99, 127-171): Linear(H, S) ReLU
    [Dropout] ... Linear(S, N) on the final hidden state (after the norm), broadcast to every module
    or layer-wise, softmax with temperature."""

    def __init__(self, h, n, n_layers, c):
        super().__init__()
        out = n * n_layers if c["layerwise_scalings"] else n
        layers, d = [], h
        for _ in range(c["xlora_depth"] - 1):
            layers += [nn.Linear(d, c["xlora_size"]), nn.ReLU()]
            if c["xlora_dropout_p"] > 0:
                layers.append(nn.Dropout(c["xlora_dropout_p"]))
            d = c["xlora_size"]
        self.layers = nn.Sequential(*layers, nn.Linear(d, out))
        self.n, self.L, self.c, self.temperature = n, n_layers, c, 1.0

    def forward(self, hidden):
        z = self.layers(hidden)
        if self.c["layerwise_scalings"]:
            z = z.reshape(*hidden.shape[:-1], self.L, self.n)
        else:
            z = z.unsqueeze(-2).expand(*hidden.shape[:-1], self.L, self.n)
        return F.softmax(z / self.temperature, dim=-1)


def mix_model():
    """the base with a Mix on each of the 16 projections (X-LoRA's module order: block, then q, k, v, o)"""
    m, _ = load_demo_model(False)
    for p in m.parameters():
        p.requires_grad_(False)
    ts = {d: load_safetensors(os.path.join(OUT, "lora_" + d, "adapter_model.safetensors")) for d in DOMAINS}
    mixes = []
    for L, b in enumerate(m.layers):
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            P = f"base_model.model.model.layers.{L}.self_attn.{n}"
            mx = Mix(getattr(b, n), [(ts[d][P + ".lora_A.weight"], ts[d][P + ".lora_B.weight"]) for d in DOMAINS])
            setattr(b, n, mx)
            mixes.append(mx)
    mg = load_safetensors(os.path.join(OUT, "mole", "adapter_model.safetensors"))
    for j, mx in enumerate(mixes):
        L, n = divmod(j, 4)
        mx.mole_gate = mg[f"base_model.model.model.layers.{L}.self_attn.{['q_proj', 'k_proj', 'v_proj', 'o_proj'][n]}"
                          ".lora_gating.weight"]
    return m, mixes


def hidden_of(m, idx):
    """the final hidden state after the norm (X-LoRA's pass 1 at scaling_pass_value 0: the base model)"""
    T = idx.shape[1]
    cos, sin = rope_tables(T, m.c["dim"] // m.c["n_heads"], m.c["rope_theta"])
    mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
    x = m.embed(idx)
    for b in m.layers:
        x = b(x, cos, sin, mask)
    return m.norm(x)


class XLoraRun(nn.Module):
    """X-LoRA's two passes (peft/tuners/xlora/model.py:355-382): pass 1 with every weight 0 is the
    base model; the classifier's scalings then weight each module's LoRAs in pass 2."""

    def __init__(self, m, mixes, clf):
        super().__init__()
        self.m, self.mixes, self.clf, self.c = m, mixes, clf, m.c

    def forward(self, idx):
        for mx in self.mixes:
            mx.mode = "base"
        with torch.no_grad():
            h = hidden_of(self.m, idx)
        S = self.clf(h)                                 # (B, T, L, N)
        for l, mx in enumerate(self.mixes):
            mx.mode, mx.w = "xlora", S[..., l, :]
        return self.m(idx)


def domain_windows(corpus, gen, rows, T, frac):
    """`rows` training windows of T + 1 bytes, one domain each, a share `frac` of them switching to
    another domain at a random point; with each byte's domain (0 prose, 1 C, 2 Python)"""
    xs, ys = [], []
    for j in range(rows):
        d0 = j % 3
        buf = corpus[DOMAINS[d0]]
        s = int(torch.randint(0, len(buf) - T - 1, (1,), generator=gen))
        x, y = buf[s:s + T + 1].clone(), torch.full((T + 1,), d0)
        if j < rows * frac:
            cut = int(torch.randint(16, T - 16, (1,), generator=gen))
            d1 = (d0 + 1 + int(torch.randint(0, 2, (1,), generator=gen))) % 3
            buf = corpus[DOMAINS[d1]]
            s = int(torch.randint(0, len(buf) - T - 1, (1,), generator=gen))
            x[cut:], y[cut:] = buf[s:s + T + 1 - cut], d1
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def xlora_data(m, mixes, corpus, gen):
    """the classifier's training windows (from the first 95% of each domain's training text) with every
    byte's domain and pass 1's hidden states, cached (pass 1 at scaling_pass_value 0 is the base model,
    independent of the classifier); and VAL_WINDOWS pure windows per domain from the last 5%"""
    cut = {d: int(len(corpus[d]) * 0.95) for d in DOMAINS}
    xs, ys = domain_windows({d: corpus[d][:cut[d]] for d in DOMAINS}, gen, XLORA["rows"], CFG["seq_len"],
                            XLORA["switch_rows"])
    set_mode(mixes, "base")
    with torch.no_grad():
        hs = torch.cat([hidden_of(m, xs[i:i + 32, :-1].long()) for i in range(0, len(xs), 32)])
    T = CFG["seq_len"]
    val = {d: corpus[d][cut[d]:][:VAL_WINDOWS * T].reshape(VAL_WINDOWS, T) for d in DOMAINS}
    return xs, ys, hs, val


def domain_logits(clf, h):
    """the classifier's logits (B, N) broadcast, or (B * L, N) layer-wise (every module's own logits)"""
    return clf.layers(h).reshape(-1, clf.n)


def train_domain(clf, hs, ys, gen, log, cfg=None):
    """stage 1: cross-entropy of the classifier's logits against each byte's domain, on cached states
    (layer-wise: every module's logits against the same label)"""
    cfg = cfg or XLORA
    rep = clf.L if cfg["layerwise_scalings"] else 1
    hs, ys = hs.reshape(-1, CFG["dim"]), ys[:, :-1].reshape(-1)
    opt = torch.optim.AdamW(clf.parameters(), lr=cfg["lr"], weight_decay=0.0)
    clf.train()
    tot, nrun = 0.0, 0
    for step in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg["lr"], step, cfg["steps"])
        pick = torch.randint(0, len(ys), (1024,), generator=gen)
        loss = F.cross_entropy(domain_logits(clf, hs[pick]), ys[pick].repeat_interleave(rep))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot, nrun = tot + loss.item(), nrun + 1
        if (step + 1) % 200 == 0 or step == cfg["steps"] - 1:
            with torch.no_grad():
                acc = (domain_logits(clf, hs).argmax(-1) == ys.repeat_interleave(rep)).float().mean().item()
            log(f"  steps {step + 1 - nrun:5d}..{step:5d}  domain cross-entropy {tot / nrun:.4f}, accuracy {acc:.3f}")
            tot, nrun = 0.0, 0


def lm_steps_log(opt, lr, steps, what, log, step_loss):
    """the LM training loop both mixtures share: steps of opt on lr's schedule (lr_at), each on the
    (loss, total) step_loss() gives (total backward; loss the logged LM loss), the mean of loss in
    bits/byte logged every 100 steps and at the last as what"""
    tot, nrun, t0 = 0.0, 0, time.time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(lr, step, steps)
        loss, total = step_loss()
        opt.zero_grad()
        total.backward()
        opt.step()
        tot, nrun = tot + loss.item(), nrun + 1
        if (step + 1) % 100 == 0 or step == steps - 1:
            log(f"  LM steps {step + 1 - nrun:5d}..{step:5d}  {what} {tot / nrun / math.log(2):.4f} bits/byte, "
                f"{(time.time() - t0) / (step + 1):.2f} s a step")
            tot, nrun = 0.0, 0


def train_lm(clf, m, mixes, xs, hs, gen, log, cfg=None):
    """stage 2, X-LoRA's own objective: the LM loss of pass 2 under the classifier's scalings, pass 1
    read from the cache; only pass 2 runs forward and backward, and only the classifier learns"""
    cfg = cfg or XLORA
    opt = torch.optim.AdamW(clf.parameters(), lr=cfg["lm_lr"], weight_decay=0.0)
    clf.train()

    def step_loss():
        pick = torch.randint(0, len(xs), (cfg["lm_batch"],), generator=gen)
        S = clf(hs[pick])                                # (B, T, L, N)
        for l, mx in enumerate(mixes):
            mx.mode, mx.w = "xlora", S[..., l, :]
        xb = xs[pick]
        loss = F.cross_entropy(m(xb[:, :-1].long()).reshape(-1, 256), xb[:, 1:].reshape(-1).long())
        return loss, loss
    lm_steps_log(opt, cfg["lm_lr"], cfg["lm_steps"], "pass-2 loss", log, step_loss)


def train_xlora(m, mixes, corpus, log, cfg=None):
    """PEFT's XLoraClassifier in two stages: the domain of each byte from pass 1's hidden state (cheap,
    on cached states), then cfg["lm_steps"] of X-LoRA's own LM loss through pass 2 from there"""
    cfg = cfg or XLORA
    torch.manual_seed(500)
    clf = XLoraClassifier(CFG["dim"], len(DOMAINS), len(mixes), cfg)
    run = XLoraRun(m, mixes, clf)
    gen = torch.Generator().manual_seed(50)
    log(f"xlora: {sum(p.numel() for p in clf.parameters())} classifier parameters, {cfg}")
    t0 = time.time()
    xs, ys, hs, val = xlora_data(m, mixes, corpus, gen)
    log(f"  {len(xs)} windows of {CFG['seq_len']} bytes ({cfg['switch_rows']:.0%} switching domain), hidden "
        f"states in {time.time() - t0:.1f} s")
    train_domain(clf, hs, ys, gen, log, cfg)
    log(f"  after the domain stage: {xlora_val_line(run, m, mixes, val)}")
    if cfg["lm_steps"]:
        train_lm(clf, m, mixes, xs, hs, gen, log, cfg)
        log(f"  after the LM stage: {xlora_val_line(run, m, mixes, val)}")
    clf.eval()
    log(f"xlora classifier trained in {time.time() - t0:.1f} s")
    return clf, run, val


@torch.no_grad()
def xlora_val_line(run, m, mixes, val):
    """bits/byte of X-LoRA minus each domain's own LoRA on the training text's held-out 5% (pure windows)"""
    def bpb(fn, x):
        return F.cross_entropy(fn(x.long())[:, :-1].reshape(-1, 256), x[:, 1:].reshape(-1).long()).item() / math.log(2)
    out = []
    for i, d in enumerate(DOMAINS):
        set_mode(mixes, ("lora", i))
        own = bpb(m, val[d])
        out.append(f"{d} {bpb(run, val[d]) - own:+.4f}")
    return "X-LoRA minus the own LoRA on the training text's held-out 5%: " + "  ".join(out)


@torch.no_grad()
def xlora_diagnose(run, m, mixes, texts, log):
    """what limits X-LoRA (reported, chooses nothing): per text, the classifier's accuracy on each byte's
    domain, overall and by position in the 128-byte window, its mean weight on the right LoRA, and the
    bits/byte with oracle weights (1 on the byte's own domain's LoRA): the ceiling of any classifier"""
    T, n3 = CFG["seq_len"], EVAL_BYTES // 3
    for name, data in texts.items():
        lab = torch.tensor([DOMAINS.index(name) if name in DOMAINS else min(i // n3, 2) for i in range(len(data))])
        hit, conf, pos, tot, loss, n = [], [], torch.zeros(3), torch.zeros(3), 0.0, 0
        for s in range(0, len(data) - 1, T):
            w, y = data[s:s + T], lab[s:s + T]
            if len(w) < 2:
                break
            set_mode(mixes, "base")
            S = run.clf(hidden_of(m, w[None].long()))[0].mean(1)           # the mean over the modules
            ok = (S.argmax(-1) == y).float()
            hit.append(ok)
            conf.append(S.gather(1, y[:, None])[:, 0])
            for j, (a, b) in enumerate([(0, 16), (16, 64), (64, T)]):
                pos[j] += ok[a:b].sum()
                tot[j] += len(ok[a:b])
            W = F.one_hot(y, len(DOMAINS)).float()[None]
            for mx in mixes:
                mx.mode, mx.w = "xlora", W
            loss += F.cross_entropy(m(w[None].long())[0, :-1], w[1:].long(), reduction="sum").item()
            n += len(w) - 1
        oracle = loss / n / math.log(2)
        log(f"  {name:13s} accuracy {torch.cat(hit).mean():.3f} (bytes 0-15 {pos[0] / tot[0]:.2f}, 16-63 "
            f"{pos[1] / tot[1]:.2f}, 64-127 {pos[2] / tot[2]:.2f}), mean weight on the right LoRA "
            f"{torch.cat(conf).mean():.3f}, oracle weights {oracle:.4f} bits/byte")


def export_xlora(clf, n_layers, name="xlora"):
    """PEFT's X-LoRA layout: adapter_config.json (peft_type XLORA, the adapters by relative paths) and
    the classifier under PEFT's key names (Sequential index j of each Linear)"""
    xdir, c = os.path.join(OUT, name), clf.c
    os.makedirs(xdir, exist_ok=True)
    t = {f"base_model.internal_xlora_classifier.layers.{k}": v for k, v in clf.layers.state_dict().items()}
    save_safetensors(os.path.join(xdir, "adapter_model.safetensors"), t)
    conf = {"peft_type": "XLORA", "task_type": "CAUSAL_LM", "hidden_size": CFG["dim"],
            "adapters": {str(i): "../lora_" + d for i, d in enumerate(DOMAINS)},
            "enable_softmax": True, "enable_softmax_topk": False, "layerwise_scalings": c["layerwise_scalings"],
            "xlora_depth": c["xlora_depth"], "xlora_size": c["xlora_size"],
            "xlora_dropout_p": c["xlora_dropout_p"], "use_trainable_adapters": False,
            "softmax_temperature": clf.temperature, "top_k_lora": None, "scaling_pass_value": 0.0,
            "global_scaling_weight": 1.0, "base_model_name_or_path": None, "inference_mode": True}
    write_json(os.path.join(xdir, "adapter_config.json"), conf, indent=2, sort_keys=True)


def mix_bpb(fn, texts):
    return {d: bits_per_byte_fn(fn, texts[d], CFG["seq_len"]) for d in texts}


@torch.no_grad()
def bits_per_byte_fn(fn, data, T):
    tot, n = 0.0, 0
    for s in range(0, len(data) - 1, T):
        w = data[s:s + T]
        if len(w) < 2:
            break
        tot += F.cross_entropy(fn(w[None].long())[0, :-1], w[1:].long(), reduction="sum").item()
        n += len(w) - 1
    return tot / n / math.log(2)


def set_mode(mixes, mode):
    for mx in mixes:
        mx.mode = ("mole", mx.mole_gate) if mode == "mole" else mode


def mix_stage():
    torch.set_num_threads(int(os.environ.get("DEMO_THREADS", "2")))   # 1 on a machine shared with others
    log = open_log("a")
    corpus, evald = load_texts()
    for name in MIX_TEXTS:
        b = mixed_text(name)
        write_file(os.path.join(DATA, name + ".txt"), b)
        evald[name] = torch.tensor(list(b), dtype=torch.uint8)
        log(f"[{name}] held out, three pieces of {EVAL_BYTES // 3} bytes: " +
            ", ".join(f"{p} (after byte {k})" for p, k, _ in MIX_PIECES[name]))
    m, mixes = mix_model()
    clf, run, _ = train_xlora(m, mixes, corpus, log)
    ada, _ = load_demo_model(True)
    rows = {}
    set_mode(mixes, "base")
    rows["base"] = mix_bpb(m, evald)
    for i, d in enumerate(DOMAINS):
        set_mode(mixes, ("lora", i))
        rows["lora " + d] = mix_bpb(m, evald)
    set_mode(mixes, "mole")
    rows["MoLE"] = mix_bpb(m, evald)
    sel = {"mixed_select": evald["mixed_select"]}
    arrow = {}
    for k, t in ARROW_GRID:                              # Arrow's settings, chosen on mixed_select only
        set_mode(mixes, ("arrow", k, t))
        arrow[(k, t)] = mix_bpb(m, sel)["mixed_select"]
    k, t = min(arrow, key=arrow.get)
    log("arrow on mixed_select, top_k x temperature: " +
        "  ".join(f"k{a} T{b}: {v:.4f}" for (a, b), v in arrow.items()) + f" -> k {k}, T {t}")
    set_mode(mixes, ("arrow", k, t))
    rows[f"Arrow k{k} T{t}"] = mix_bpb(m, evald)
    xl = {}
    for temp in XLORA_TEMPS:                             # the softmax temperature, chosen on mixed_select
        clf.temperature = temp
        xl[temp] = mix_bpb(run, sel)["mixed_select"]
    clf.temperature = min(xl, key=xl.get)
    log("xlora on mixed_select, softmax temperature: " + "  ".join(f"T{a}: {v:.4f}" for a, v in xl.items()) +
        f" -> T {clf.temperature}")
    rows[f"X-LoRA T{clf.temperature}"] = mix_bpb(run, evald)
    log("xlora, what limits it (every text, chooses nothing):")
    xlora_diagnose(run, m, mixes, evald, log)
    export_xlora(clf, len(mixes))
    rows["AdaMoLE"] = mix_bpb(ada, evald)
    cols = DOMAINS + MIX_TEXTS
    log("bits/byte (PyTorch)   " + "".join(f"{c:>13s}" for c in cols))
    for r, v in rows.items():
        log(f"  {r:20s}" + "".join(f"{v[c]:13.4f}" for c in cols))
    singles = [rows["base"]] + [rows["lora " + d] for d in DOMAINS]
    for r in [r for r in rows if r.startswith(("Arrow", "X-LoRA", "MoLE"))]:
        best = min(s["mixed_report"] for s in singles)
        pure = max(rows[r][d] - rows["lora " + d][d] for d in DOMAINS)
        log(f"{r}: mixed_report {rows[r]['mixed_report'] - best:+.4f} against the best single model; "
            f"pure domains at most {pure:+.4f} from the domain's own LoRA (goal: < 0 and <= 0.01)")
    write_json(os.path.join(OUT, "mix_table.json"), {"arrow": {"top_k": k, "router_temperature": t},
                                                      "xlora_temperature": clf.temperature, "rows": rows}, indent=2)
    compose_arrow(log, k, t)


def compose_arrow(log, k, t):
    """Arrow needs no training: `molora compose --routing arrow:K:T` of the three LoRAs (exact
    prototypes, computed by molora); expert paths relative, as for the MoLE composition"""
    import subprocess
    rel = os.path.relpath(OUT, ROOT)
    cmd = ["build/molora", "compose"]
    for d in DOMAINS:
        cmd += ["--expert", os.path.join(rel, "lora_" + d)]
    cmd += ["--routing", f"arrow:{k}:{t:g}", "--out", os.path.join(rel, "arrow")]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=ROOT)


# ---- --mix-try WHAT: the attempts at the pure-domain goal (issue 15), each reported, none the demo's choice ----
# mole_output      the MoLE paper's gate on the experts' deltas (Eq. 9-11; molora's MOLE_OUTPUT rule), trained
#                  by the LM loss (plus the paper's gating balance loss, Eq. 13, times MOLE_OUT["balance"])
# xlora_layerwise  X-LoRA with PEFT's layerwise_scalings (one softmax per module), domain then LM stage
# mole_diag        the dense MoLE gate of --mole: its weights, their entropy and the plain average
MOLE_OUT = dict(steps=300, lr=1e-2, batch=16, balance=0.0, train_temperature=1.0)
MOLE_OUT_TEMPS = [0.5, 1.0, 2.0]
MOLE_OUT.update(json.loads(os.environ.get("DEMO_MOLE_OUT", "{}")))   # e.g. DEMO_MOLE_OUT='{"lr": 0.1}'
if os.environ.get("DEMO_SMOKE"):
    MOLE_OUT.update(steps=2)


def mix_texts():
    """the pure held-out texts and the two mixed ones, as committed (written by --mix)"""
    _, evald = load_texts()
    for name in MIX_TEXTS:
        evald[name] = torch.tensor(list(read(os.path.join(DATA, name + ".txt"))), dtype=torch.uint8)
    return evald


def single_rows(m, mixes, texts):
    rows = {}
    set_mode(mixes, "base")
    rows["base"] = mix_bpb(m, texts)
    for i, d in enumerate(DOMAINS):
        set_mode(mixes, ("lora", i))
        rows["lora " + d] = mix_bpb(m, texts)
    return rows


def goal_line(rows, r):
    best = min(rows[s]["mixed_report"] for s in ["base"] + ["lora " + d for d in DOMAINS])
    gaps = "  ".join(f"{d} {rows[r][d] - rows['lora ' + d][d]:+.4f}" for d in DOMAINS)
    return (f"{r}: mixed_report {rows[r]['mixed_report'] - best:+.4f} against the best single model; "
            f"pure domains from the domain's own LoRA: {gaps} (goal: < 0 and each <= 0.01)")


def log_rows(rows, log):
    cols = DOMAINS + MIX_TEXTS
    log("bits/byte (PyTorch)   " + "".join(f"{c:>13s}" for c in cols))
    for r, v in rows.items():
        log(f"  {r:20s}" + "".join(f"{v[c]:13.4f}" for c in cols))


@torch.no_grad()
def routing_diagnose(fn, mixes, texts, log):
    """per text: the argmax of the weights averaged over the 16 modules against each byte's domain, the
    mean weight on the right LoRA, the mean weight of each LoRA and the mean entropy of a module's weights"""
    T, n3 = CFG["seq_len"], EVAL_BYTES // 3
    for name, data in texts.items():
        lab = torch.tensor([DOMAINS.index(name) if name in DOMAINS else min(i // n3, 2) for i in range(len(data))])
        ws = []
        for s in range(0, len(data) - 1, T):
            for mx in mixes:
                mx.record = []
            fn(data[s:s + T][None].long())
            ws.append(torch.stack([mx.record[-1] for mx in mixes], 1))     # (T, modules, N)
        for mx in mixes:
            mx.record = None
        W = torch.cat(ws)
        mean = W.mean(1)
        ent = -(W.clamp_min(1e-12).log2() * W).sum(-1).mean()
        log(f"  {name:13s} accuracy {(mean.argmax(-1) == lab).float().mean():.3f}, mean weight on the right LoRA "
            f"{mean.gather(1, lab[:, None]).mean():.3f}, mean weights " +
            " ".join(f"{v:.3f}" for v in mean.mean(0).tolist()) + f", entropy {ent:.3f} bits (of {math.log2(3):.3f})")


def train_mole_output(m, mixes, xs, val, gen, log):
    """e (N, N * d_out) per module from zero (the plain average), AdamW on the LM loss of the mixture, plus
    the paper's balance loss -sum_i log q_i per module (q_i the mean weight of expert i in the batch)"""
    es = [nn.Parameter(torch.zeros(len(DOMAINS), len(DOMAINS) * mx.base.out_features)) for mx in mixes]
    c = MOLE_OUT
    opt = torch.optim.AdamW(es, lr=c["lr"], weight_decay=0.0)

    def step_loss():
        for mx, e in zip(mixes, es):
            mx.mode = ("mole_output", e, c["train_temperature"])
        xb = xs[torch.randint(0, len(xs), (c["batch"],), generator=gen)]
        loss = F.cross_entropy(m(xb[:, :-1].long()).reshape(-1, 256), xb[:, 1:].reshape(-1).long())
        total = loss
        if c["balance"]:
            bal = sum(-mx.w.reshape(-1, len(DOMAINS)).mean(0).log().sum() for mx in mixes)
            total = loss + c["balance"] * bal
        return loss, total
    lm_steps_log(opt, c["lr"], c["steps"], "loss", log, step_loss)
    es = [e.detach() for e in es]
    for mx, e in zip(mixes, es):
        mx.mode = ("mole_output", e, 1.0)
    log("  " + val_line(m, mixes, val))
    return es


@torch.no_grad()
def val_line(fn, mixes, val):
    """bits/byte of the mixture fn (its modes set) minus each domain's own LoRA on the training text's held-out 5%"""
    def bpb(f, x):
        return F.cross_entropy(f(x.long())[:, :-1].reshape(-1, 256), x[:, 1:].reshape(-1).long()).item() / math.log(2)
    modes = [mx.mode for mx in mixes]
    mine = {d: bpb(fn, val[d]) for d in DOMAINS}
    out = []
    for i, d in enumerate(DOMAINS):
        set_mode(mixes, ("lora", i))
        out.append(f"{d} {mine[d] - bpb(fn, val[d]):+.4f}")
        for mx, md in zip(mixes, modes):
            mx.mode = md
    return "minus the own LoRA on the training text's held-out 5%: " + "  ".join(out)


def export_mole_output(es, temperature, name="mole_output"):
    """molora's composed layout with routing mole_output: the three LoRAs as experts 0..2 and e as
    P.mole_gate.weight (N, N * d_out); the expert paths (informational) relative to the directory"""
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    ts = {k: load_safetensors(os.path.join(OUT, "lora_" + k, "adapter_model.safetensors")) for k in DOMAINS}
    t = {}
    for j, e in enumerate(es):
        L, n = divmod(j, 4)
        P = f"base_model.model.model.layers.{L}.self_attn.{['q_proj', 'k_proj', 'v_proj', 'o_proj'][n]}"
        for i, k in enumerate(DOMAINS):
            t[f"{P}.lora_A.{i}.weight"] = ts[k][P + ".lora_A.weight"]
            t[f"{P}.lora_B.{i}.weight"] = ts[k][P + ".lora_B.weight"]
        t[f"{P}.mole_gate.weight"] = e
    save_safetensors(os.path.join(d, "adapter_model.safetensors"), t)
    write_json(os.path.join(d, "adapter_config.json"),
               {"peft_type": "MOLORA", "routing": "mole_output", "temperature": temperature,
                "experts": ["../lora_" + k for k in DOMAINS],
                "expert_scaling": [MOLE["lora_alpha"] / MOLE["r"]] * len(DOMAINS)}, indent=1)


def pick_temperature(set_t, fn, temps, texts, log, what):
    """the temperature with the lowest bits/byte on mixed_select only"""
    sel = {"mixed_select": texts["mixed_select"]}
    got = {}
    for t in temps:
        set_t(t)
        got[t] = mix_bpb(fn, sel)["mixed_select"]
    best = min(got, key=got.get)
    log(f"{what} on mixed_select, temperature: " + "  ".join(f"T{a}: {v:.4f}" for a, v in got.items()) +
        f" -> T {best}")
    set_t(best)
    return best


def mix_try_stage(what):
    torch.set_num_threads(int(os.environ.get("DEMO_THREADS", "1")))
    log = open_log("a")
    corpus, _ = load_texts()
    texts = mix_texts()
    m, mixes = mix_model()
    rows = single_rows(m, mixes, texts)
    log(f"--mix-try {what}")
    if what == "mole_output":
        gen = torch.Generator().manual_seed(60)
        cut, val = xlora_data_val(corpus)
        xs, _ = domain_windows({d: corpus[d][:cut[d]] for d in DOMAINS}, gen, XLORA["rows"], CFG["seq_len"],
                               XLORA["switch_rows"])
        log(f"mole_output: {len(mixes)} gates of {len(DOMAINS)} x {len(DOMAINS) * CFG['dim']}, {MOLE_OUT}")
        es = train_mole_output(m, mixes, xs, val, gen, log)

        def set_t(t):
            for mx, e in zip(mixes, es):
                mx.mode = ("mole_output", e, t)
        t = pick_temperature(set_t, m, MOLE_OUT_TEMPS, texts, log, "mole_output")
        name = f"MoLE output gate T{t}"
        rows[name] = mix_bpb(m, texts)
        routing_diagnose(m, mixes, texts, log)
        export_mole_output(es, t)
    elif what == "xlora_layerwise":
        cfg = dict(XLORA, layerwise_scalings=True)
        clf, run, _ = train_xlora(m, mixes, corpus, log, cfg)

        def set_t(t):
            clf.temperature = t
        t = pick_temperature(set_t, run, XLORA_TEMPS, texts, log, "xlora layer-wise")
        name = f"X-LoRA layer-wise T{t}"
        rows[name] = mix_bpb(run, texts)
        routing_diagnose(run, mixes, texts, log)
        export_xlora(clf, len(mixes), "xlora_layerwise")
    elif what == "mole_diag":
        _, val = xlora_data_val(corpus)
        set_mode(mixes, "mole")
        rows["MoLE"] = mix_bpb(m, texts)
        log("  MoLE " + val_line(m, mixes, val))
        routing_diagnose(m, mixes, texts, log)
        for mx in mixes:
            mx.mode, mx.w = "xlora", torch.full((len(DOMAINS),), 1.0 / len(DOMAINS))
        rows["plain average"] = mix_bpb(m, texts)
        log("  plain average " + val_line(m, mixes, val))
        name = "MoLE"
        train_text = {d: corpus[d][len(corpus[d]) // 2:][:EVAL_BYTES] for d in DOMAINS}
        log(f"  on {EVAL_BYTES} bytes from the middle of each domain's training text (seen by the LoRAs and the gate):")
        models = [("base", "base")] + [("lora " + d, ("lora", i)) for i, d in enumerate(DOMAINS)] + [("MoLE", "mole")]
        for r, md in models:
            set_mode(mixes, md)
            v = mix_bpb(m, train_text)
            log(f"    {r:12s}" + "".join(f"  {d} {v[d]:.4f}" for d in DOMAINS))
    else:
        raise SystemExit(f"--mix-try: {what}? (mole_output, xlora_layerwise or mole_diag)")
    log_rows(rows, log)
    log(goal_line(rows, name))
    if what != "mole_diag":
        mix_try_parity(log)


@torch.no_grad()
def mix_try_parity(log):
    """logits.mole_output and logits.xlora_layerwise on the parity prompts, from the exported files read
    back (what the C engine reads), for each of the two that exists in OUT"""
    path = os.path.join(OUT, "parity.safetensors")
    pt = load_safetensors(path)
    prompts = pt["prompts"]
    m, mixes = mix_model()
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    d = os.path.join(OUT, "mole_output")
    if os.path.exists(d):
        conf, t = json.loads(read(os.path.join(d, "adapter_config.json"))), load_safetensors(
            os.path.join(d, "adapter_model.safetensors"))
        for j, mx in enumerate(mixes):
            P = f"base_model.model.model.layers.{j // 4}.self_attn.{names[j % 4]}"
            mx.mode = ("mole_output", t[P + ".mole_gate.weight"], conf["temperature"])
        pt["logits.mole_output"] = torch.stack([m(prompts[j:j + 1].long())[0] for j in range(len(prompts))])
        log("parity: logits.mole_output from " + os.path.relpath(d, ROOT))
    d = os.path.join(OUT, "xlora_layerwise")
    if os.path.exists(d):
        conf = json.loads(read(os.path.join(d, "adapter_config.json")))
        clf = XLoraClassifier(CFG["dim"], len(DOMAINS), len(mixes), {k: conf[k] for k in
                              ["layerwise_scalings", "xlora_depth", "xlora_size", "xlora_dropout_p"]})
        pre = "base_model.internal_xlora_classifier.layers."
        t = load_safetensors(os.path.join(d, "adapter_model.safetensors"))
        clf.layers.load_state_dict({k[len(pre):]: v for k, v in t.items()})
        clf.temperature = conf["softmax_temperature"]
        clf.eval()
        run = XLoraRun(m, mixes, clf)
        pt["logits.xlora_layerwise"] = torch.stack([run(prompts[j:j + 1].long())[0] for j in range(len(prompts))])
        log("parity: logits.xlora_layerwise from " + os.path.relpath(d, ROOT))
    save_safetensors(path, pt)


def xlora_data_val(corpus):
    cut = {d: int(len(corpus[d]) * 0.95) for d in DOMAINS}
    return cut, {d: corpus[d][cut[d]:][:VAL_WINDOWS * CFG["seq_len"]].reshape(VAL_WINDOWS, CFG["seq_len"])
                 for d in DOMAINS}


if __name__ == "__main__":
    tries = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--mix-try=")]
    if tries and tries[0] == "parity":
        mix_try_parity(open_log("a"))
    elif tries:
        mix_try_stage(tries[0])
    elif "--mix" in sys.argv:
        mix_stage()
    elif "--mola" in sys.argv:
        mola_stage()
    elif "--parity" in sys.argv:
        export_parity(open_log("a"))
    elif "--mole" in sys.argv:
        mole_stage()
    else:
        main()
