#!/usr/bin/python3
"""fff.torch against plain PyTorch, side by side in one process per thread count.

1. Training step (forward + backward, loss = cross-entropy + 3 * mean node entropy) of
   fff.torch.LeafFFF(784, 10, depth=4, leaf_width=8) at batch 256 against the same soft leaf FFF
   written in PyTorch with einsum (the reference implementation's formulation).
2. NeuronFFF(768, 768, depth=11).eval() under torch.inference_mode(), timed from Python with the
   call, against PyTorch's dense FF-3072 (nn.Linear-GELU-nn.Linear) and against UltraFastBERT's
   formulation in PyTorch (gather the path's rows level by level), at batch 16,384 and 128;
   also with half_weights=True (the engine reads IEEE-half copies of w1 and w2).
3. The Python call overhead at batch 1: the module's call minus the engine's own call.

Each thread count runs in a fresh process with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
torch.set_num_threads set to it. Several threads run twice, in separate processes: with
OMP_WAIT_POLICY=PASSIVE (Debian's PyTorch runs its products in OpenBLAS's own pool, and OpenMP
threads that spin take the cores from it) and with libgomp's default spin-then-sleep (with which
fff's parallel regions start without waking sleeping threads, ~70 us each on this VM). Figures are medians over repeats after a warm-up; every fff output is
checked against its baseline before it is timed.

    PYTHONPATH=build/python /usr/bin/python3 bench/bench_torch.py            # 1 and 2 threads
    PYTHONPATH=build/python /usr/bin/python3 bench/bench_torch.py --threads 1 --json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_seconds(fn, repeats, min_time=0.2):
    """Median over `repeats` of the time per call, each repeat long enough to time (min_time)."""
    fn()  # warm-up (and engine preparation)
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, int(min_time / one))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def worker(threads, repeats, quick):
    import torch
    import torch.nn.functional as F

    import fff.torch as ft

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    results = {"threads": threads}

    # 1. Leaf FFF training step.
    B, depth, lw, d_in, d_out, h = 256, 4, 8, 784, 10, 3.0
    L = 2**depth
    layer = ft.LeafFFF(d_in, d_out, depth=depth, leaf_width=lw, threads=threads)
    ref = {k: v.detach().clone().requires_grad_(True) for k, v in layer.state_dict().items()}
    x = torch.randn(B, d_in)
    target = torch.randint(0, d_out, (B,))

    def einsum_leaf(x, p):
        logits = x @ p["nodes_w"].t() + p["nodes_b"]  # (B, n)
        q = torch.sigmoid(logits)
        mix = torch.ones(x.shape[0], 1)
        for level in range(depth):  # path probabilities, level by level: (B, 2^level)
            ql = q[:, 2**level - 1:2**(level + 1) - 1]
            mix = torch.stack([mix * (1 - ql), mix * ql], dim=2).reshape(x.shape[0], -1)
        hid = torch.relu(torch.einsum("bi,ilh->blh", x, p["w1"].view(d_in, L, lw)) +
                         p["b1"].view(L, lw))
        out = torch.einsum("blh,lho->blo", hid, p["w2"].view(L, lw, d_out)) + p["b2"]
        y = torch.einsum("bl,blo->bo", mix, out)
        qc = q.clamp(1e-6, 1 - 1e-6)
        entropy = -(qc * qc.log() + (1 - qc) * (1 - qc).log()).mean()
        return y, entropy

    def step_fff():
        for p in layer.parameters():
            p.grad = None
        y, ent = layer(x, return_entropy=True)
        (F.cross_entropy(y, target) + h * ent).backward()

    def step_einsum():
        for p in ref.values():
            p.grad = None
        y, ent = einsum_leaf(x, ref)
        (F.cross_entropy(y, target) + h * ent).backward()

    step_fff()
    step_einsum()
    worst = max(float((layer._parameters[k].grad - ref[k].grad).abs().max()) for k in ref)
    assert worst < 1e-4, f"leaf FFF gradients differ from the einsum baseline by {worst}"
    t_fff, t_ein = median_seconds(step_fff, repeats), median_seconds(step_einsum, repeats)
    results["leaf_train_step"] = {"batch": B, "fff_ms": t_fff * 1e3, "einsum_ms": t_ein * 1e3,
                                  "speedup": t_ein / t_fff, "max_grad_diff": worst}

    # 2. Neuron FFF inference against dense FF-3072 and the gather formulation.
    H, I, D = 768, 3072, 11
    nfff = ft.NeuronFFF(H, H, depth=D, threads=threads).eval()
    dense = torch.nn.Sequential(torch.nn.Linear(H, I), torch.nn.GELU(),
                                torch.nn.Linear(I, H)).eval()
    w1, b1, w2, bias = (nfff.w1.detach(), nfff.b1.detach(), nfff.w2.detach(),
                        nfff.b.detach())

    def gather_fff(x):
        """UltraFastBERT's formulation: each level gathers the rows of the nodes reached."""
        node = torch.zeros(x.shape[0], dtype=torch.long)
        y = bias.expand(x.shape[0], H).clone()
        for _ in range(D + 1):
            z = (x * w1[node]).sum(-1) + b1[node]
            y += F.gelu(z).unsqueeze(1) * w2[node]
            node = 2 * node + 1 + (z > 0).long()
        return y

    results["neuron_infer"] = []
    batches = [128] if quick else [16384, 128]
    with torch.inference_mode():
        for batch in batches:
            xb = torch.randn(batch, H)
            y_fff, y_gather = nfff(xb), gather_fff(xb)
            diff = float((y_fff - y_gather).abs().max())
            assert diff < 1e-3, f"neuron FFF differs from the gather formulation by {diff}"
            t_fff = median_seconds(lambda: nfff(xb), repeats)
            nfff.half_weights = True  # the engine reads IEEE-half copies of w1 and w2
            half_diff = float((nfff(xb) - y_gather).abs().max())
            t_half = median_seconds(lambda: nfff(xb), repeats)
            nfff.half_weights = False
            t_dense = median_seconds(lambda: dense(xb), max(3, repeats // 2))
            t_gather = median_seconds(lambda: gather_fff(xb), max(3, repeats // 2))
            results["neuron_infer"].append({
                "batch": batch, "fff_us_per_row": t_fff / batch * 1e6,
                "fff_half_us_per_row": t_half / batch * 1e6, "half_max_diff": half_diff,
                "half_speedup_vs_dense": t_dense / t_half,
                "dense_us_per_row": t_dense / batch * 1e6,
                "gather_us_per_row": t_gather / batch * 1e6,
                "speedup_vs_dense": t_dense / t_fff, "speedup_vs_gather": t_gather / t_fff,
                "gather_vs_dense": t_dense / t_gather, "max_diff_vs_gather": diff})

        # 3. Call overhead at batch 1.
        x1 = torch.randn(1, H)
        y1 = torch.empty(1, H)
        nfff(x1)
        ptr_x, ptr_y = x1.data_ptr(), y1.data_ptr()
        t_call = median_seconds(lambda: nfff(x1), repeats)
        t_engine = median_seconds(lambda: nfff._ops.infer(ptr_x, 1, ptr_y), repeats)
        t_dense1 = median_seconds(lambda: dense(x1), repeats)
        results["batch1"] = {"call_us": t_call * 1e6, "engine_us": t_engine * 1e6,
                             "overhead_us": (t_call - t_engine) * 1e6,
                             "dense_us": t_dense1 * 1e6}
    return results


def report(all_results, cpu):
    print(f"CPU: {cpu}; PyTorch and fff side by side, medians")
    for r in all_results:
        n = r["threads"]
        s = r["leaf_train_step"]
        policy = f", OMP_WAIT_POLICY {r['wait_policy']}" if n > 1 else ""
        print(f"\n[{n} thread{'s' if n > 1 else ''}{policy}]")
        print(f"  LeafFFF(784, 10, depth=4, leaf_width=8) train step, batch {s['batch']}: "
              f"fff {s['fff_ms']:.3f} ms, einsum {s['einsum_ms']:.3f} ms: "
              f"{s['speedup']:.2f}x faster (target >= 2x)")
        for e in r["neuron_infer"]:
            target = 100 if e["batch"] >= 16384 else 50
            print(f"  NeuronFFF(768, 768, depth=11).eval(), batch {e['batch']}: "
                  f"fff {e['fff_us_per_row']:.3f} us/row, dense FF-3072 "
                  f"{e['dense_us_per_row']:.2f} us/row: {e['speedup_vs_dense']:.1f}x "
                  f"(target >= {target}x); with half_weights {e['fff_half_us_per_row']:.3f} "
                  f"us/row, {e['half_speedup_vs_dense']:.1f}x; gather formulation "
                  f"{e['gather_us_per_row']:.2f} us/row ({e['gather_vs_dense']:.2f}x dense)")
        b = r["batch1"]
        print(f"  batch 1: module call {b['call_us']:.2f} us, engine call {b['engine_us']:.2f} us,"
              f" Python overhead {b['overhead_us']:.2f} us (target < 10); dense FF-3072 "
              f"{b['dense_us']:.1f} us")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--wait-policy", default="PASSIVE,default",
                    help="OMP_WAIT_POLICY values to run several threads under, comma-separated "
                         "(PASSIVE: PyTorch's best here; default: libgomp's spin-then-sleep, fff's "
                         "best); each in its own process")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats per figure (median)")
    ap.add_argument("--quick", action="store_true", help="skip batch 16,384 (a smoke run)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeats, args.quick)))
        return 0
    policies = [p.strip() for p in args.wait_policy.split(",")]
    if any(p not in ("PASSIVE", "ACTIVE", "default") for p in policies):
        ap.error(f"--wait-policy {args.wait_policy!r}: expected PASSIVE, ACTIVE or default")
    try:
        counts = [int(t) for t in args.threads.split(",")]
        if any(t < 1 for t in counts):
            raise ValueError
    except ValueError:
        ap.error(f"--threads {args.threads!r}: expected positive integers separated by commas")
    results = []
    for n in counts:
        # One thread: the wait policy does not matter. Several: each policy in its own process.
        for policy in (["PASSIVE"] if n == 1 else policies):
            env = dict(os.environ, OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n))
            env.pop("OMP_WAIT_POLICY", None)
            if policy != "default":
                env["OMP_WAIT_POLICY"] = policy
            cmd = [sys.executable, __file__, "--worker", str(n), "--repeats", str(args.repeats)]
            print(f"running {n} thread(s), OMP_WAIT_POLICY {policy}...", file=sys.stderr)
            out = subprocess.run(cmd + (["--quick"] if args.quick else []), env=env, check=True,
                                 capture_output=True, text=True)
            result = json.loads(out.stdout)
            result["wait_policy"] = policy
            results.append(result)
    cpu = cpu_name()
    if args.json:
        print(json.dumps({"cpu": cpu, "results": results}))
    else:
        report(results, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
