#!/usr/bin/python3
"""Turns the JSON that bench/run's benchmarks wrote into results.json, PNG plots and a report.

    bench/report.py --raw DIR --out DIR [--markdown FILE]

DIR (--raw) holds machine.json, run.json and one <benchmark>.json per program (engine, gguf, step,
seccomp, session_open, protocol, load, streaming, memory, gateway); any that is missing is reported as
not measured. Writes OUT/results.json (everything, with the headline table), OUT/*.png (via
gnuplot) and the Markdown report (default OUT/../benchmarks.md). Standard library only; Debian's
python3 comes with clang-tidy, which tools/setup.sh installs.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

MIB = 1024.0 * 1024.0


def load(raw, name):
    path = os.path.join(raw, name + ".json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    # Several runs of one program (NAME.1.json, NAME.2.json, ...): their median.
    runs = []
    i = 1
    while os.path.exists(os.path.join(raw, f"{name}.{i}.json")):
        with open(os.path.join(raw, f"{name}.{i}.json"), encoding="utf-8") as f:
            runs.append(json.load(f))
        i += 1
    return median_of_runs(runs) if runs else None


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def median_of_runs(runs):
    """engine_bench's JSON from several runs: each row's numbers are the median over the runs of
    the row with the same kind, preset, format and kernel."""
    out = dict(runs[0])
    out["runs"] = len(runs)
    def key(r):
        return (r.get("kind"), r.get("preset"), r.get("format"), r.get("kernel"))
    rows = []
    for row in runs[0].get("rows", []):
        same = [r for run in runs for r in run.get("rows", []) if key(r) == key(row)]
        merged = dict(row)
        for field, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                merged[field] = median([r[field] for r in same if field in r])
        rows.append(merged)
    out["rows"] = rows
    return out


def fmt(v, digits=2):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if v != 0 and abs(v) < 0.1:
        return f"{v:.2g}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def med(item, field):
    """A streaming_bench figure: a distribution (its median) or a plain number."""
    v = item.get(field)
    if isinstance(v, dict):
        return v.get("p50")
    return v


def by_key(items, key, value):
    for item in items or []:
        if item.get(key) == value:
            return item
    return None


class Headline:
    """The table of every figure: group, figure, value, unit, target, baseline, ratio."""

    def __init__(self):
        self.rows = []

    def add(self, group, figure, value, unit, target="", baseline=None, baseline_name="",
            ratio=None, met=None):
        if ratio is None and baseline not in (None, 0) and value is not None:
            ratio = value / baseline
        self.rows.append({
            "group": group, "figure": figure, "value": value, "unit": unit, "target": target,
            "baseline": baseline, "baseline_name": baseline_name, "ratio": ratio, "met": met,
        })

    def markdown(self):
        out = ["| figure | value | target | baseline | ratio |",
               "|---|---:|---|---|---:|"]
        group = None
        for r in self.rows:
            if r["group"] != group:
                group = r["group"]
                out.append(f"| **{group}** | | | | |")
            target = r["target"]
            if r["met"] is not None and target:
                target += " ✅ met" if r["met"] else " ❌ not met"
            baseline = ""
            if r["baseline"] is not None:
                baseline = f"{r['baseline_name']}: {fmt(r['baseline'])} {r['unit']}"
            elif r["baseline_name"]:
                baseline = r["baseline_name"]
            value = f"{fmt(r['value'])} {r['unit']}" if r["value"] is not None else "–"
            ratio = fmt(r["ratio"]) + "×" if r["ratio"] is not None else ""
            out.append(f"| {r['figure']} | {value} | {target} | {baseline} | {ratio} |")
        return "\n".join(out)


class Plots:
    """Writes gnuplot data and scripts to a temporary directory and runs gnuplot."""

    def __init__(self, out_dir, machine_line):
        self.out_dir = out_dir
        self.tmp = tempfile.mkdtemp(prefix="cellhouse-plots.")
        self.machine_line = machine_line.replace('"', "'")
        self.made = []

    def data(self, name, header, rows):
        path = os.path.join(self.tmp, name + ".dat")
        with open(path, "w", encoding="utf-8") as f:
            f.write("# " + " ".join(header) + "\n")
            for row in rows:
                f.write(" ".join(str(c) for c in row) + "\n")
        return path

    def plot(self, name, title, body):
        png = os.path.join(self.out_dir, name + ".png")
        script = "\n".join([
            'set terminal pngcairo size 900,540 font "DejaVu Sans,10" noenhanced',
            f'set output "{png}"',
            f'set title "{title}\\n{self.machine_line}"',
            "set grid ytics lc rgb '#dddddd'",
            "set key top left box opaque",
            "set border 3",
            "set tics nomirror",
            body,
        ])
        path = os.path.join(self.tmp, name + ".gp")
        with open(path, "w", encoding="utf-8") as f:
            f.write(script + "\n")
        result = subprocess.run(["gnuplot", path], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"report: gnuplot failed on {name}: {result.stderr.strip()}", file=sys.stderr)
            return None
        self.made.append(name)
        return name + ".png"


def machine_line(m):
    bw = m.get("bandwidth_gbps")
    bw_text = f", {bw:.1f} GB/s single-thread read" if bw else ""
    return (f"{m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPUs, "
            f"{m.get('memory_gib', 0):.0f} GiB, Linux {m.get('kernel', '?')}{bw_text}")


# ---- the five groups ----


def open_latency(d, h, plots, md):
    if d is None:
        md.append("*Not measured (session_open_bench did not run).*")
        return
    methods = {m["name"]: m for m in d["methods"]}
    unshare = methods.get("unshare")
    bwrap = methods.get("bwrap")
    group = "1. Session open latency (connect → Ready)"
    target = "p50 < 0.5× unshare"
    for key, label in [("pooled", "pooled (pre-forked worker)"), ("full", "cold (--pool-size 0)")]:
        m = methods.get(key)
        if m is None or unshare is None:
            continue
        for phase, field, phase_label in [("spaced", "spaced_open_ms", "one open every "
                                           f"{d['spacing_ms']} ms"),
                                          ("back_to_back", "open_ms", "back to back")]:
            for pct in ("p50", "p99"):
                v = m[field][pct]
                b = unshare[field][pct]
                met = (v / b < 0.5) if pct == "p50" else None
                h.add(group, f"{label}, full sandbox, {phase_label}, {pct}", v, "ms",
                      target if pct == "p50" else "", b, f"unshare {pct}", met=met)
    if bwrap and unshare:
        h.add(group, "bwrap --unshare-all, spaced, p50", bwrap["spaced_open_ms"]["p50"], "ms", "",
              unshare["spaced_open_ms"]["p50"], "unshare p50")
    refill = d.get("pool_refill") or []
    kept = [r for r in refill if r["pooled_share"] >= 0.9]
    if kept:
        best = max(kept, key=lambda r: r["opens_per_second"])
        h.add(group, "opens/s the pool sustains (≥ 90% served by the pool)",
              best["opens_per_second"], "opens/s", "", None,
              f"pool of 2; pause {best['pause_ms']} ms between opens")

    # Plot: p50 and p99, spaced and back to back, per method.
    order = ["pooled", "full", "no-cgroups", "no-sandbox", "bare", "unshare", "bwrap"]
    names = {"pooled": "celld pooled", "full": "celld cold", "no-cgroups": "cold, no cgroups",
             "no-sandbox": "cold, no sandbox", "bare": "cold, neither",
             "unshare": "unshare(1)", "bwrap": "bwrap(1)"}
    rows = []
    for key in order:
        m = methods.get(key)
        if m is None:
            continue
        rows.append([f'"{names[key]}"', m["spaced_open_ms"]["p50"], m["spaced_open_ms"]["p99"],
                     m["open_ms"]["p50"], m["open_ms"]["p99"]])
    data = plots.data("open", ["method", "spaced_p50", "spaced_p99", "b2b_p50", "b2b_p99"], rows)
    png = plots.plot("open_latency", "Session open latency: celld (full sandbox) vs unshare and bwrap",
                     f"""set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set ylabel "milliseconds"
set xtics rotate by -20
set yrange [0:*]
plot "{data}" using 2:xtic(1) title "spaced p50" lc rgb '#1f77b4', \\
     "" using 3 title "spaced p99" lc rgb '#aec7e8', \\
     "" using 4 title "back-to-back p50" lc rgb '#ff7f0e', \\
     "" using 5 title "back-to-back p99" lc rgb '#ffbb78'""")
    if png:
        md.append(f"![Session open latency](benchmarks/{png})\n")

    md.append(f"Samples: {d['samples']} back to back per method (interleaved in blocks, order "
              f"rotated) and {d['spaced_samples']} spaced ({d['spacing_ms']} ms apart); "
              f"model preset {d['preset']}. *Cold* daemons run with `--pool-size 0`, so every "
              "open clones, maps and places a worker; the *pooled* daemon keeps celld's default "
              "pool (2 per policy).\n")
    md.append("| method | p50 ms | p99 ms | spaced p50 ms | spaced p99 ms | spaced p50 / unshare |")
    md.append("|---|---:|---:|---:|---:|---:|")
    for key in order:
        m = methods.get(key)
        if m is None:
            continue
        ratio = ""
        if unshare:
            ratio = fmt(m["spaced_open_ms"]["p50"] / unshare["spaced_open_ms"]["p50"]) + "×"
        md.append(f"| {m['description']} | {fmt(m['open_ms']['p50'])} | "
                  f"{fmt(m['open_ms']['p99'])} | {fmt(m['spaced_open_ms']['p50'])} | "
                  f"{fmt(m['spaced_open_ms']['p99'])} | {ratio} |")
    share = methods.get("pooled", {}).get("pooled_share")
    if share:
        md.append(f"\nThe pool served {share['spaced'] * 100:.0f}% of the spaced opens and "
                  f"{share['back_to_back'] * 100:.0f}% of the back-to-back ones (blocks of ten "
                  "opens in a row, other methods' blocks between them).\n")
    layers = d["derived"].get("layer_cost_ms", {})
    if layers:
        md.append("Cost of each layer (difference of p50s, ms):\n")
        md.append("| layer | back to back | spaced |")
        md.append("|---|---:|---:|")
        for name, v in layers.items():
            md.append(f"| {name} | {fmt(v['back_to_back'])} | {fmt(v['spaced'])} |")
    if refill:
        md.append("\nPool refill: opens one after another on the pooled daemon with a pause after "
                  "each (pool refilled before each row):\n")
        md.append("| pause ms | opens/s | served by the pool | p50 ms | p99 ms |")
        md.append("|---:|---:|---:|---:|---:|")
        for r in refill:
            md.append(f"| {r['pause_ms']} | {fmt(r['opens_per_second'])} | "
                      f"{r['pooled_share'] * 100:.0f}% | {fmt(r['open_ms']['p50'])} | "
                      f"{fmt(r['open_ms']['p99'])} |")
    conc = d.get("concurrent") or []
    if conc:
        md.append("\nConcurrent openers (threads opening at once):\n")
        md.append("| method | openers | p50 ms | p99 ms | opens/s |")
        md.append("|---|---:|---:|---:|---:|")
        for r in conc:
            md.append(f"| {r['method']} | {r['openers']} | {fmt(r['open_ms']['p50'])} | "
                      f"{fmt(r['open_ms']['p99'])} | {fmt(r['per_second'])} |")
    steps = (d.get("sandbox_steps_us") or {}).get("full")
    if steps:
        md.append("\nSandbox steps of a cold open (the zygote's own timings, µs):\n")
        md.append("| step | back-to-back p50 | p99 | spaced p50 | spaced p99 |")
        md.append("|---|---:|---:|---:|---:|")
        for s in steps:
            sp = s.get("spaced_us") or {}
            def us(v):
                return "–" if v is None else f"{v:,.0f}"
            md.append(f"| {s['step']} | {us(s['back_to_back_us']['p50'])} | "
                      f"{us(s['back_to_back_us']['p99'])} | {us(sp.get('p50'))} | "
                      f"{us(sp.get('p99'))} |")


def memory(d, h, plots, md):
    if d is None:
        md.append("*Not measured (memory_bench did not run).*")
        return
    group = "2. Memory (110m preset, PSS of every worker + the zygote)"
    weights = d["weights_bytes"]
    for sweep, label in [("idle", "idle"), ("conversation", "holding a conversation")]:
        s = d[sweep]
        pts = s["points"]
        for p in pts:
            h.add(group, f"total PSS, N = {p['sessions']} {label}",
                  p["total_pss_bytes"] / MIB, "MiB", "", p["naive_bytes"] / MIB,
                  "naive N × (weights + state)")
        h.add(group, f"marginal cost of one more session, {label}", s["marginal_bytes_per_session"] / MIB,
              "MiB", "", s["naive_bytes_per_session"] / MIB, "naive per session")
    rows = []
    idle = {p["sessions"]: p for p in d["idle"]["points"]}
    conv = {p["sessions"]: p for p in d["conversation"]["points"]}
    for n in sorted(set(idle) | set(conv)):
        i, c = idle.get(n), conv.get(n)
        rows.append([n, i["total_pss_bytes"] / MIB if i else "NaN",
                     c["total_pss_bytes"] / MIB if c else "NaN",
                     (i or c)["naive_bytes"] / MIB if i else "NaN",
                     c["naive_bytes"] / MIB if c else "NaN"])
    data = plots.data("memory", ["n", "idle", "conv", "naive_idle", "naive_conv"], rows)
    ctx = d["conversation"]["points"][-1]["context_used"] if d["conversation"]["points"] else 0
    png = plots.plot("memory_pss", "Memory: total PSS against N sessions (110m, weights shared)",
                     f"""set logscale xy 2
set xlabel "sessions (N)"
set ylabel "MiB (log scale)"
set format y "%.0f"
set key top left
plot "{data}" using 1:2 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title "idle sessions", \\
     "" using 1:3 with linespoints pt 5 lw 2 lc rgb '#d62728' title "sessions holding {ctx} tokens", \\
     "" using 1:4 with lines dt 2 lw 2 lc rgb '#1f77b4' title "naive N x (weights + state), idle", \\
     "" using 1:5 with lines dt 2 lw 2 lc rgb '#d62728' title "naive N x (weights + state), {ctx} tokens" """)
    if png:
        md.append(f"![PSS against N](benchmarks/{png})\n")
    md.append(f"Model: {d['model']}; weights {weights / MIB:.1f} MiB, fixed state "
              f"{d['state_fixed_bytes'] / MIB:.1f} MiB, KV cache "
              f"{d['kv_bytes_per_token'] / 1024:.0f} KiB per context position. A conversation is "
              f"one turn of a {d['prompt_tokens']}-token prompt plus generated tokens.\n")
    for sweep, label in [("idle", "Idle sessions"), ("conversation", "Sessions holding a conversation")]:
        s = d[sweep]
        md.append(f"{label}: marginal {s['marginal_bytes_per_session'] / MIB:.2f} MiB per session "
                  f"(least-squares slope of total PSS), naive "
                  f"{s['naive_bytes_per_session'] / MIB:.1f} MiB; largest session cgroup charge "
                  f"{s['max_cgroup_bytes'] / MIB:.1f} MiB.\n")
        md.append("| N | total PSS MiB | workers PSS | zygote PSS | sum of RSS | naive MiB | naive / PSS |")
        md.append("|---:|---:|---:|---:|---:|---:|---:|")
        for p in s["points"]:
            md.append(f"| {p['sessions']} | {fmt(p['total_pss_bytes'] / MIB)} | "
                      f"{fmt(p['workers_pss_bytes'] / MIB)} | {fmt(p['zygote_pss_bytes'] / MIB)} | "
                      f"{fmt(p['workers_rss_bytes'] / MIB)} | {fmt(p['naive_bytes'] / MIB)} | "
                      f"{fmt(p['naive_bytes'] / p['total_pss_bytes'])}× |")
        md.append("")


def memory_int8(q8, fp32, h, md):
    """The same sweeps on the model quantized to int8: the mapping must be shared as the fp32
    one is, so total PSS stays the int8 file plus the sessions' own memory."""
    if q8 is None:
        md.append("*int8: not measured (memory_bench --int8-group-size did not run).*")
        return
    group = "2. Memory (110m preset, PSS of every worker + the zygote)"
    weights = q8["weights_bytes"]
    fp32_idle = {p["sessions"]: p for p in fp32["idle"]["points"]} if fp32 else {}
    for p in q8["idle"]["points"]:
        n = p["sessions"]
        base = fp32_idle.get(n)
        h.add(group, f"int8 ({q8['format']}) model: total PSS, N = {n} idle",
              p["total_pss_bytes"] / MIB, "MiB", "", base["total_pss_bytes"] / MIB if base else None,
              "the fp32 model, same N" if base else "")
    s = q8["idle"]
    h.add(group, f"int8 ({q8['format']}) model: marginal cost of one more session, idle",
          s["marginal_bytes_per_session"] / MIB, "MiB", "",
          fp32["idle"]["marginal_bytes_per_session"] / MIB if fp32 else None,
          "fp32 marginal" if fp32 else "")
    c = q8.get("conversation")
    if c:
        # An int8 model's KV cache is fp16 (run_state.h): half the bytes per position.
        h.add(group, f"int8 ({q8['format']}) model: marginal cost of one more session, holding "
              "a conversation (fp16 KV cache)", c["marginal_bytes_per_session"] / MIB, "MiB", "",
              fp32["conversation"]["marginal_bytes_per_session"] / MIB if fp32 else None,
              "fp32 marginal" if fp32 else "")
    md.append(f"### The same on an int8 model ({q8['format']})\n")
    md.append(f"`cellmodel quantize` output, {weights / MIB:.1f} MiB (fp32: "
              f"{fp32['weights_bytes'] / MIB:.1f} MiB). Shared exactly as fp32: total PSS − "
              "the file is what the sessions themselves take.\n" if fp32 else
              f"`cellmodel quantize` output, {weights / MIB:.1f} MiB.\n")
    md.append("| sessions | N | total PSS MiB | total PSS − int8 file, MiB | zygote PSS | fp32 total PSS, same N |")
    md.append("|---|---:|---:|---:|---:|---:|")
    for sweep, label in [("idle", "idle"), ("conversation", "holding a conversation")]:
        base = {p["sessions"]: p for p in fp32[sweep]["points"]} if fp32 else {}
        for p in q8[sweep]["points"]:
            b = base.get(p["sessions"])
            md.append(f"| {label} | {p['sessions']} | {fmt(p['total_pss_bytes'] / MIB)} | "
                      f"{fmt((p['total_pss_bytes'] - weights) / MIB)} | "
                      f"{fmt(p['zygote_pss_bytes'] / MIB)} | "
                      f"{fmt(b['total_pss_bytes'] / MIB) if b else '–'} |")
    md.append("")


def generation(engine, streaming, load, h, plots, md, cpus):
    group = "3. Generation"
    bandwidth = None
    if engine:
        for r in engine["rows"]:
            if r["kind"] == "bandwidth":
                bandwidth = r["bytes_per_second"]
        models = [r for r in engine["rows"] if r["kind"] == "model"]
        for m in models:
            decodes = [r for r in engine["rows"] if r["kind"] == "decode"
                       and r["preset"] == m["preset"] and r.get("format") == m.get("format")]
            if decodes:
                best = max(decodes, key=lambda r: r["tokens_per_second"])
                fp32 = m.get("format", "fp32") == "fp32"
                # The targets are set for the 110m preset: fp32 (issue 2) and int8 (issue 8).
                need = (0.9 if fp32 else 0.85) if m["preset"] == "110m" else None
                target = f"≥ {need * 100:.0f}% of roofline" if need else ""
                frac = best["tokens_per_second"] / m["roofline_tokens_per_second"]
                # Above the memory roofline only when the weights stay in the CPU's caches
                # between tokens (the 15m int8 file is 16 MiB): say so rather than hide it.
                cached = " (weights fit in the CPU's cache: memory does not bound it)" if frac > 1 else ""
                h.add(group, f"engine decode, {m['preset']} {m.get('format', 'fp32')} "
                      f"({best['kernel']}), one thread{cached}", best["tokens_per_second"], "tok/s",
                      target, m["roofline_tokens_per_second"], "bandwidth roofline of its bytes",
                      met=(frac >= need) if need else None)
                base = [r for r in engine["rows"] if r["kind"] == "decode"
                        and r["preset"] == m["preset"] and r.get("format", "fp32") == "fp32"]
                if not fp32 and base:
                    base_best = max(r["tokens_per_second"] for r in base)
                    ratio = best["tokens_per_second"] / base_best
                    h.add(group, f"engine decode, {m['preset']} {m['format']} against fp32, "
                          "one thread", best["tokens_per_second"], "tok/s",
                          "≥ 3.3× fp32" if m["preset"] == "110m" else "", base_best,
                          "fp32 decode", met=(ratio >= 3.3) if m["preset"] == "110m" else None)
            pre = [r for r in engine["rows"] if r["kind"] == "prefill"
                   and r["preset"] == m["preset"] and r.get("format") == m.get("format")]
            if pre and decodes:
                h.add(group, f"engine prefill, {m['preset']} {m.get('format', 'fp32')}, "
                      f"{pre[0]['prompt_tokens']}-token prompt", pre[0]["tokens_per_second"],
                      "tok/s", "several × decode", best["tokens_per_second"], "decode",
                      met=pre[0]["tokens_per_second"] >= 2 * best["tokens_per_second"])
        md.append(f"Engine alone, one thread (engine_bench: the median over {engine.get('runs', 1)} "
                  f"runs of the best of its {engine.get('repeats', '?')} repeats), against the "
                  "roofline: measured single-thread read bandwidth / bytes read per token "
                  "(every weight, and the KV cache rows of the measurement's mean context).\n")
        md.append("| model | format | kernel | tokens/s | GB/s read | of roofline |")
        md.append("|---|---|---|---:|---:|---:|")
        for r in engine["rows"]:
            if r["kind"] == "decode":
                md.append(f"| {r['preset']} | {r.get('format', 'fp32')} | {r['kernel']} | "
                          f"{fmt(r['tokens_per_second'])} | {fmt(r['bytes_per_second'] / 1e9)} | "
                          f"{r['roofline_fraction'] * 100:.0f}% |")
            elif r["kind"] == "prefill":
                md.append(f"| {r['preset']} | {r.get('format', 'fp32')} | prefill "
                          f"({r['prompt_tokens']} tokens) | {fmt(r['tokens_per_second'])} | | "
                          f"{fmt(r['times_decode'])}× decode |")
        md.append("")
    if streaming:
        for preset in streaming["presets"]:
            paths = {p["path"]: p for p in preset["paths"]}
            session = paths.get("session")
            if session and engine:
                model = by_key([r for r in engine["rows"] if r["kind"] == "model"
                                and r.get("format", "fp32") == "fp32"], "preset", preset["preset"])
                if model:
                    h.add(group, f"session decode, {preset['preset']} (sandbox + cgroups, median)",
                          med(session, "decode_tokens_per_second"), "tok/s", "", model["roofline_tokens_per_second"],
                          "bandwidth roofline")
    if load:
        levels = load["levels"]
        for lv in levels:
            n = lv["sessions"]
            h.add(group, f"N = {n} generating: aggregate", lv["aggregate_tokens_per_second"],
                  "tok/s", "", levels[0]["aggregate_tokens_per_second"], "1 session")
        for lv in levels:
            h.add(group, f"N = {lv['sessions']}: fairness (Jain's index; min/max rate "
                  f"{fmt(lv['min_session_tokens_per_second'])}/{fmt(lv['max_session_tokens_per_second'])})",
                  lv["jain_fairness"], "", "1 = equal shares", None, "")
        for lv in levels:
            h.add(group, f"N = {lv['sessions']}: inter-token latency p99",
                  lv["inter_token_ms"]["p99"], "ms", "p99 < 500 ms", None,
                  f"p50 {fmt(lv['inter_token_ms']['p50'])} ms", met=lv["inter_token_ms"]["p99"] < 500)
        for lv in levels:
            h.add(group, f"N = {lv['sessions']}: time to first token p99",
                  lv["time_to_first_token_ms"]["p99"], "ms", "", None,
                  f"p50 {fmt(lv['time_to_first_token_ms']['p50'])} ms")
        one_rate = levels[0]["session_tokens_per_second"]["p50"] if levels[0]["sessions"] == 1 else 0
        rows = [[lv["sessions"], lv["aggregate_tokens_per_second"],
                 lv["session_tokens_per_second"]["p50"], lv["min_session_tokens_per_second"],
                 lv["inter_token_ms"]["p50"], lv["inter_token_ms"]["p99"],
                 lv["time_to_first_token_ms"]["p50"], lv["time_to_first_token_ms"]["p99"],
                 min(lv["sessions"], cpus) * one_rate]
                for lv in levels]
        data = plots.data("load", ["n", "agg", "per", "min", "itl50", "itl99", "ttft50", "ttft99",
                                   "ideal"], rows)
        png1 = plots.plot("load_tokens", f"Tokens/s with N sessions generating at once ({load['preset']})",
                          f"""set logscale x 2
set xlabel "concurrent generating sessions (N)"
set ylabel "tokens/s"
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0
set key top right
plot "{data}" using 1:2 with linespoints pt 7 lw 2 lc rgb '#1f77b4' title "aggregate", \\
     "" using 1:3 with linespoints pt 5 lw 2 lc rgb '#2ca02c' title "per session (median)", \\
     "" using 1:4 with linespoints pt 4 lw 1 lc rgb '#98df8a' title "slowest session", \\
     "" using 1:9 with lines dt 2 lw 1 lc rgb '#7f7f7f' title "min(N, {cpus}) x one session's rate" """)
        png2 = plots.plot("load_latency", f"Latency with N sessions generating at once ({load['preset']})",
                          f"""set logscale x 2
set logscale y 10
set xlabel "concurrent generating sessions (N)"
set ylabel "milliseconds (log scale)"
set key bottom right
plot "{data}" using 1:6 with linespoints pt 7 lw 2 lc rgb '#d62728' title "inter-token p99", \\
     "" using 1:5 with linespoints pt 6 lw 1 lc rgb '#ff9896' title "inter-token p50", \\
     "" using 1:8 with linespoints pt 5 lw 2 lc rgb '#9467bd' title "time to first token p99", \\
     "" using 1:7 with linespoints pt 4 lw 1 lc rgb '#c5b0d5' title "time to first token p50", \\
     500 with lines dt 2 lw 2 lc rgb '#000000' title "target: p99 500 ms" """)
        for png, alt in [(png1, "tokens/s against N"), (png2, "latency against N")]:
            if png:
                md.append(f"![{alt}](benchmarks/{png})\n")
        md.append(f"load_bench: {load['preset']}, every session sends the same request "
                  f"(\"{load['prompt']}\", greedy, {load['tokens']} new tokens) at the same moment; "
                  f"rates and fairness are medians of {load['repetitions']} repetitions, latency "
                  "percentiles are over every token of every repetition. Default policy: one CPU "
                  "per session. Aggregate is every token over the run's wall time (first request "
                  "to last token, prefills included); a session's rate is its decode rate (first "
                  "to last token), which is why one session's rate exceeds the aggregate at "
                  "N = 1.\n")
        md.append("| N | aggregate tok/s | per session p50 | slowest | fastest | Jain | TTFT p50 ms | TTFT p99 | ITL p50 ms | ITL p99 |")
        md.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for lv in levels:
            md.append(f"| {lv['sessions']} | {fmt(lv['aggregate_tokens_per_second'])} | "
                      f"{fmt(lv['session_tokens_per_second']['p50'])} | "
                      f"{fmt(lv['min_session_tokens_per_second'])} | "
                      f"{fmt(lv['max_session_tokens_per_second'])} | {lv['jain_fairness']:.3f} | "
                      f"{fmt(lv['time_to_first_token_ms']['p50'])} | "
                      f"{fmt(lv['time_to_first_token_ms']['p99'])} | "
                      f"{fmt(lv['inter_token_ms']['p50'])} | {fmt(lv['inter_token_ms']['p99'])} |")
        md.append("")
    return bandwidth


def protocol(proto, streaming, h, md):
    group = "4. Protocol"
    if proto:
        paths = {p["name"]: p for p in proto["paths"]}
        eng, sock = paths.get("engine"), paths.get("socketpair")
        for key, label in [("session", "sandbox + cgroups"), ("no-cgroups", "sandbox, no cgroups"),
                           ("bare", "no sandbox, no cgroups")]:
            p = paths.get(key)
            if p is None:
                continue
            for pct in ("p50", "p99"):
                h.add(group, f"1-token Generate round trip, tiny model, {label}, {pct}",
                      p["round_trip_ms"][pct] * 1000, "µs", "", eng["round_trip_ms"][pct] * 1000 if eng else None,
                      f"engine in-process {pct}")
        if sock and paths.get("session"):
            h.add(group, "session round trip p50 against a bare socketpair round trip",
                  paths["session"]["round_trip_ms"]["p50"] * 1000, "µs", "",
                  sock["round_trip_ms"]["p50"] * 1000, "socketpair p50")
        md.append(f"protocol_bench: Generate with max_new_tokens 1 on the tiny model, "
                  f"{proto['samples']} round trips per path, interleaved in blocks.\n")
        md.append("| path | p50 µs | p90 µs | p99 µs | p50 − engine | first turn p50 µs | first p99 µs |")
        md.append("|---|---:|---:|---:|---:|---:|---:|")
        for p in proto["paths"]:
            s = p["round_trip_ms"]
            f = p.get("first_turn_ms") or {}
            over = (s["p50"] - eng["round_trip_ms"]["p50"]) * 1000 if eng else None
            first50 = f["p50"] * 1000 if f else None
            first99 = f["p99"] * 1000 if f else None
            md.append(f"| {p['description']} | {fmt(s['p50'] * 1000)} | {fmt(s['p90'] * 1000)} | "
                      f"{fmt(s['p99'] * 1000)} | {fmt(over)} | {fmt(first50)} | {fmt(first99)} |")
        md.append("\nThe first turn on a fresh session (or conversation) is reported apart: it "
                  "allocates and first touches the session's state.")
        md.append("")
    if streaming:
        md.append("Streaming a whole generation (streaming_bench: the same greedy continuation on "
                  f"every path, medians of {streaming['presets'][0].get('repetitions', '?')} repetitions, order "
                  "rotated):\n")
        md.append("| model | path | decode tok/s | vs engine | µs per token vs engine | TTFT ms | tok per CPU-s |")
        md.append("|---|---|---:|---:|---:|---:|---:|")
        for preset in streaming["presets"]:
            paths = {p["path"]: p for p in preset["paths"]}
            eng = paths.get("engine")
            for p in preset["paths"]:
                rate = med(p, "decode_tokens_per_second")
                rel = per_token = None
                if eng and rate:
                    rel = rate / med(eng, "decode_tokens_per_second")
                    per_token = (1 / rate - 1 / med(eng, "decode_tokens_per_second")) * 1e6
                md.append(f"| {preset['preset']} | {p['description']} | {fmt(rate)} | "
                          f"{fmt(rel, 3)}× | {fmt(per_token)} | {fmt(med(p, 'time_to_first_token_ms'))} | "
                          f"{fmt(med(p, 'tokens_per_cpu_second'))} |")
            session = paths.get("session")
            if eng and session:
                per_token = (1 / med(session, "decode_tokens_per_second")
                             - 1 / med(eng, "decode_tokens_per_second")) * 1e6
                h.add(group, f"streaming: per-token cost of a session over the engine, {preset['preset']}",
                      per_token, "µs/token", "", None,
                      f"engine {fmt(1e6 / med(eng, 'decode_tokens_per_second'))} µs/token")
                cm = paths.get("cellmodel")
                h.add(group, f"streaming: session decode vs cellmodel run, {preset['preset']}",
                      med(session, "decode_tokens_per_second"), "tok/s", "within 3%",
                      med(cm, "decode_tokens_per_second") if cm else None, "cellmodel run",
                      met=(abs(med(session, "decode_tokens_per_second") / med(cm, "decode_tokens_per_second") - 1) <= 0.03
                           or med(session, "decode_tokens_per_second") > med(cm, "decode_tokens_per_second")) if cm else None)
        md.append("")


def sandbox_cost(seccomp, streaming, h, md):
    group = "5. Sandbox cost"
    if seccomp:
        for c in seccomp["calls"]:
            h.add(group, f"seccomp: {c['description']}, default policy's filter",
                  c["filter_ns"]["p50"], "ns", "", c["no_filter_ns"]["p50"], "no filter")
        md.append(f"seccomp_bench: the `{seccomp['policy']}` policy's filter "
                  f"({seccomp['filter_instructions']} BPF instructions, "
                  f"{seccomp['allowed_syscalls']} calls allowed), {seccomp['iterations']:,} calls "
                  f"per child, median of {seccomp['repeats']} children per figure, modes rotated.\n")
        md.append("| call | no filter ns | allow-all filter ns | policy filter ns | cost ns | ratio |")
        md.append("|---|---:|---:|---:|---:|---:|")
        for c in seccomp["calls"]:
            md.append(f"| {c['description']} | {fmt(c['no_filter_ns']['p50'])} | "
                      f"{fmt(c.get('allow_all_ns', {}).get('p50'))} | {fmt(c['filter_ns']['p50'])} | "
                      f"{fmt(c['cost_ns'])} | {fmt(c['ratio'])}× |")
        md.append("")
    if streaming:
        for preset in streaming["presets"]:
            paths = {p["path"]: p for p in preset["paths"]}
            full, bare = paths.get("session"), paths.get("session-bare")
            nocg = paths.get("session-no-cgroups")
            if full and bare:
                r = med(full, "decode_tokens_per_second") / med(bare, "decode_tokens_per_second")
                h.add(group, f"decode with sandbox + cgroups vs neither, {preset['preset']}",
                      med(full, "decode_tokens_per_second"), "tok/s", "within 2%",
                      med(bare, "decode_tokens_per_second"), "--insecure-no-sandbox --no-cgroups",
                      met=r >= 0.98)
            if nocg and bare:
                r = med(nocg, "decode_tokens_per_second") / med(bare, "decode_tokens_per_second")
                h.add(group, f"decode with the sandbox alone vs neither, {preset['preset']}",
                      med(nocg, "decode_tokens_per_second"), "tok/s", "within 2%",
                      med(bare, "decode_tokens_per_second"), "--insecure-no-sandbox --no-cgroups",
                      met=r >= 0.98)


def analysis(b):
    """The closing paragraphs: where the time goes, with this run's numbers."""
    out = []
    d = b.get("session_open")
    if d:
        m = {x["name"]: x for x in d["methods"]}
        layers = d["derived"].get("layer_cost_ms", {})
        cg = layers.get("cgroups (with sandbox)", {})
        steps = {s["step"]: s for s in (d.get("sandbox_steps_us") or {}).get("full", [])}
        place = steps.get("cgroup placement", {})
        clone = steps.get("clone3", {})
        if "full" in m and "pooled" in m and "unshare" in m:
            out.append(
                f"**Opening a session.** A cold open with the full sandbox takes "
                f"{fmt(m['full']['spaced_open_ms']['p50'])} ms at the median when opens are "
                f"spaced, {fmt(m['full']['open_ms']['p50'])} ms back to back. Spaced, most of it "
                f"is the cgroup v1 placement: cgroups cost {fmt(cg.get('spaced'))} ms spaced against "
                + (f"{fmt(cg.get('back_to_back'))} ms" if (cg.get('back_to_back') or 0) >= 0.1
                   else "nothing measurable")
                + " back to back, and the zygote's `cgroup placement` "
                f"step alone is {fmt((place.get('spaced_us') or {}).get('p50', 0) / 1000)} ms spaced "
                f"against {fmt(place.get('back_to_back_us', {}).get('p50', 0) / 1000)} ms back to "
                "back. Writing a pid to a v1 `cgroup.procs` takes `cgroup_threadgroup_rwsem` for "
                "writing, whose `rcu_sync` waits for an RCU grace period unless another writer "
                "passed within about one: an idle host pays it on every open, a busy one does not. "
                f"The pool takes it off the open path: pooled opens take "
                f"{fmt(m['pooled']['spaced_open_ms']['p50'])} ms spaced "
                f"({fmt(m['pooled']['spaced_open_ms']['p50'] / m['unshare']['spaced_open_ms']['p50'])}× "
                "unshare). Back to back the rest is `clone3` with six namespaces "
                f"({fmt(clone.get('back_to_back_us', {}).get('p50', 0) / 1000)} ms; the design brief "
                "measured about 0.3 ms of it for the network namespace), celld's cgroup creation in four v1 hierarchies and the "
                "IPC of the hand-off; the sandbox steps after the maps add up to a few hundred µs. "
                "What would move it: `favordynmods` on the v1 hierarchies or `cgroup_favordynmods=y` "
                "(kernel ≥ 6.7) for cold opens; cgroup v2, where `CLONE_INTO_CGROUP` never takes "
                "the lock for writing; a deeper pool for bursts (the pool refills through the one "
                "single-threaded zygote, so a burst faster than its refill rate drains it and "
                "falls back to cold opens).")
    mem = b.get("memory")
    if mem:
        conv = mem["conversation"]
        idle = mem["idle"]
        out.append(
            f"**Memory.** The weights ({mem['weights_bytes'] / MIB:.0f} MiB) are one read-only "
            "mapping that the zygote makes before forking, so every worker shares the same page-cache "
            f"pages: an idle session costs {idle['marginal_bytes_per_session'] / MIB:.2f} MiB and a "
            f"session holding a conversation {conv['marginal_bytes_per_session'] / MIB:.1f} MiB, "
            f"which is its KV cache ({mem['kv_bytes_per_token'] / 1024:.0f} KiB per position), its "
            "fixed state and about 1 MiB of process. What would move it: a shorter policy "
            "context_length does not (the KV cache is touched only as the conversation grows); "
            "the int8 model's fp16 KV cache halves the per-position cost (below), and an int8 "
            "cache would quarter it; int8 weights shrink the shared part, paid once.")
    load = b.get("load")
    eng = b.get("engine")
    bw = b.get("bandwidth")
    if load:
        lv = load["levels"]
        one, most = lv[0], lv[-1]
        two = by_key(lv, "sessions", 2)
        text = ("**Generation.** Decode reads every weight once per token (438 MB per token on "
                "110m), so one session is bound by memory bandwidth")
        if eng:
            best = {}
            for r in eng["rows"]:
                if r["kind"] == "decode" and r.get("format", "fp32") == "fp32":
                    best[r["preset"]] = max(best.get(r["preset"], 0), r["roofline_fraction"])
            text += ": the engine's best kernel reaches " + ", ".join(
                f"{v * 100:.0f}% ({k})" for k, v in best.items()) + " of the single-thread roofline"
            q8 = {}
            for r in eng["rows"]:
                if r["kind"] == "decode" and r.get("format", "fp32") != "fp32":
                    key = (r["preset"], r["format"])
                    q8[key] = max(q8.get(key, (0, 0)), (r["tokens_per_second"], r["roofline_fraction"]))
            fp32_tps = {}
            for r in eng["rows"]:
                if r["kind"] == "decode" and r.get("format", "fp32") == "fp32":
                    fp32_tps[r["preset"]] = max(fp32_tps.get(r["preset"], 0), r["tokens_per_second"])
            if q8:
                text += ("; int8 weights read about a quarter of the bytes and decode at " + ", ".join(
                    f"{tps / fp32_tps[p]:.2f}× fp32 ({p} {f}, {frac * 100:.0f}% of its own roofline)"
                    for (p, f), (tps, frac) in q8.items() if fp32_tps.get(p)) +
                    ". Measured split of a 110m int8 token at a context of about 70 (timers "
                    "around each step, perf agrees): the int8 matrix products 87%, streaming at "
                    "33-35 GB/s, at the read roofline; attention 7.7% (scores 3.1%, softmax 1.1%, "
                    "weighted sum 3.5%), reading its fp16 KV cache at only about 9 GB/s: each "
                    "layer's rows are a run of a few hundred KiB written a whole pass over the "
                    "weights earlier, too short for the prefetchers to reach full speed; norms, "
                    "RoPE, SwiGLU, argmax ~5%. The weights stream from 2 MiB pages (the mapping "
                    "asks for them, and the page cache of ext4 on this kernel provides them); each "
                    "kernel step prefetches its own lines just before loading them, which keeps "
                    "more misses in flight than loads alone (a look-ahead prefetch measured "
                    "slower); an int8 model's KV cache is fp16 (with fp32 keys and values, "
                    "attention took 10% of the token). What would move int8 further: fetching a "
                    "layer's KV rows while its projections stream, so that attention stops "
                    "waiting on memory latency")
        text += ". "
        if bw:
            ratio_bw = bw["all_threads_bytes_per_second"] / bw["one_thread_bytes_per_second"]
            text += (f"Here {bw['threads']} threads reading separate buffers at once get "
                     f"{ratio_bw:.2f}× what one thread gets "
                     f"({bw['all_threads_bytes_per_second'] / 1e9:.1f} GB/s in all): on this "
                     "machine one core nearly saturates the memory system, so a second session "
                     "cannot double the rate. ")
        if two:
            text += (f"Two sessions still reach {two['aggregate_tokens_per_second'] / one['aggregate_tokens_per_second']:.2f}× "
                     "one session's rate, more than separate buffers would allow; they stream "
                     "the same shared weight pages at nearly the same moment, so one may find "
                     "in the shared cache what the other just read (a likely explanation, not "
                     "measured). ")
        over = [x["sessions"] for x in lv if x["time_to_first_token_ms"]["p99"] >= 500]
        text += (f"Past two sessions the aggregate stays at {fmt(most['aggregate_tokens_per_second'])} "
                 f"tok/s (N = {most['sessions']}) and the sessions take turns on the 2 cores, each "
                 "within its one-CPU quota; the scheduler shares them evenly (Jain's index "
                 f"{most['jain_fairness']:.3f}, slowest/fastest "
                 f"{fmt(most['min_session_tokens_per_second'])}/{fmt(most['max_session_tokens_per_second'])} "
                 f"tok/s at N = {most['sessions']}). Inter-token latency grows with N as the share "
                 f"of each session shrinks: p99 {fmt(most['inter_token_ms']['p99'])} ms at "
                 f"N = {most['sessions']}, "
                 + ("inside" if most["inter_token_ms"]["p99"] < 500 else "outside")
                 + " the 500 ms a user asked for. ")
        if over:
            text += (f"Time to first token is where N hurts first: every request arrives at once "
                     f"and the prompts' prefills queue for the 2 cores, so its p99 passes 500 ms "
                     f"from N = {over[0]} on. ")
        text += ("What would move it: more cores and memory channels; decoding several sessions "
                 "in one pass over the weights (the shared executor, celld's default for GGUF "
                 "models, §3d); serving the int8 file (`cellmodel quantize`); "
                 "for time to first token, admission that spreads simultaneous prefills.")
        out.append(text)
    proto = b.get("protocol")
    if proto:
        paths = {p["name"]: p for p in proto["paths"]}
        sess, eng_p, nocg, bare = (paths.get(k) for k in ("session", "engine", "no-cgroups", "bare"))
        if sess and eng_p:
            text = (f"**Protocol.** A request through a live session is a frame each way on a Unix "
                    f"socket straight to the worker (celld is not on the path): the 1-token round "
                    f"trip takes {fmt(sess['round_trip_ms']['p50'] * 1000)} µs at the median, "
                    f"{fmt((sess['round_trip_ms']['p50'] - eng_p['round_trip_ms']['p50']) * 1000)} µs "
                    "more than the same turn in-process: two context switches, the protobuf "
                    "frames, the worker's poll. Beside a forward pass of 2 ms (15m) to 16 ms "
                    "(110m) per token it is lost in the noise of the streaming comparison. ")
            if nocg and bare:
                text += (f"Its p99 is another matter: {fmt(sess['round_trip_ms']['p99'] * 1000)} µs with "
                         f"per-session cgroups against {fmt(nocg['round_trip_ms']['p99'] * 1000)} µs "
                         f"with the sandbox alone and {fmt(bare['round_trip_ms']['p99'] * 1000)} µs "
                         "with neither, with or without the CPU quota: a worker woken in a cgroup of "
                         "its own competes for a CPU as a group, and on a busy machine it can wait "
                         "out another task's slice (likely; not traced). Nothing a user would "
                         "notice at token rates, but it is the cgroups, not the sandbox.")
            out.append(text)
    if b.get("seccomp"):
        out.append(
            "**Sandbox.** The seccomp filter adds about 40 ns per system call, and an allow-all "
            "one-instruction filter costs nearly as much: it is the slower system-call entry "
            "any filter causes, not the length of the policy's program (the kernel's per-call "
            "allow cache skips the program for calls allowed whatever their arguments). A "
            "worker makes a handful of calls per token (send a piece, poll its sockets), so the "
            "filter costs well under a microsecond per token, and generation with and without "
            "the sandbox differs by less than the run-to-run noise of a shared 2-core machine.")
    return "\n\n".join(out)


def gguf_models(gguf, h, md):
    """gguf_bench: the 110m shape as GGUF files beside fp32 and int8, and llama.cpp on the same
    files."""
    group = "3b. GGUF models"
    if not gguf:
        md.append("*Not measured in this run.*")
        return
    rows = [r for r in gguf["rows"] if r["kind"] == "format"]
    for r in rows:
        if not r["gguf"]:
            continue
        kind = r["format"]
        if r["llama_cpp_decode_tokens_per_second"] > 0:
            ratio = r["decode_tokens_per_second"] / r["llama_cpp_decode_tokens_per_second"]
            h.add(group, f"GGUF decode, {r['preset']} {kind}, one thread, against llama.cpp "
                  "(llama-bench -t 1, same file)", r["decode_tokens_per_second"], "tok/s",
                  "≥ 1× llama.cpp (aim 1.2×)", r["llama_cpp_decode_tokens_per_second"],
                  "llama.cpp tg", met=ratio >= 1.0)
        if kind == "Q8_0":
            h.add(group, f"GGUF decode, {r['preset']} Q8_0, of its bandwidth roofline",
                  r["decode_tokens_per_second"], "tok/s", "≥ 85% of roofline",
                  r["roofline_tokens_per_second"], "bandwidth roofline of its bytes",
                  met=r["roofline_fraction"] >= 0.85)
        h.add(group, f"GGUF prefill, {r['preset']} {kind}, a {r['prompt_tokens']}-token prompt "
              "again (its tokens after BOS, the cache mapped, as llama-bench's pp)",
              r["prefill_tokens_per_second"], "tok/s", "≥ 5× decode",
              r["decode_tokens_per_second"], "decode", met=r["prefill_times_decode"] >= 5)
        first = r.get("first_prefill_tokens_per_second", 0)
        if first:
            h.add(group, f"GGUF prefill, {r['preset']} {kind}, a new session's first "
                  f"{r['prompt_tokens']}-token prompt (its cache faulted in)", first, "tok/s", "",
                  r["decode_tokens_per_second"], "decode")
    md.append(f"GGUF files (gguf_bench: the {rows[0]['preset'] if rows else '?'} shape generated "
              "by `cellmodel make` and written by `cellmodel convert`'s code; best of "
              f"{gguf.get('repeats', '?')} rounds, one thread), beside cellhouse's own fp32 and "
              "int8 files of the same weights, and llama.cpp's `llama-bench -t 1` on the same "
              "GGUF files in the same run (its tg and pp figures, mean of its repetitions). "
              "Roofline: measured single-thread read bandwidth (read again in every round, the "
              "best kept, as the decode figures are) / bytes read per token (every weight in its "
              "own type, the KV cache at the mean context). Prefill: the prompt again in the "
              "session that ran it, with its first token after BOS changed, so that every token "
              "after BOS runs again through a KV cache already mapped, as llama-bench's context "
              "is allocated once for all its pp runs; *first*: the session's first prompt, which "
              "also tokenises the prompt and faults in the pages of its cache and buffers (on "
              "these VMs a page's first write after it is mapped costs about 6 µs: tens of ms "
              "for a 256-token prompt of the 110m model).\n")
    md.append("| format | file | MB/token | decode tok/s | of roofline | prefill tok/s | × decode "
              "| first prompt tok/s | llama.cpp tg | ours/llama.cpp | llama.cpp pp "
              "| ours/llama.cpp |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tg, pp = r["llama_cpp_decode_tokens_per_second"], r["llama_cpp_prefill_tokens_per_second"]
        md.append(f"| {r['format']} | {r['file_bytes'] / MIB:.0f} MiB | "
                  f"{r['bytes_per_token'] / 1e6:.1f} | {fmt(r['decode_tokens_per_second'])} | "
                  f"{r['roofline_fraction'] * 100:.0f}% | {fmt(r['prefill_tokens_per_second'])} | "
                  f"{fmt(r['prefill_times_decode'])}× | "
                  f"{fmt(first) if (first := r.get('first_prefill_tokens_per_second')) else '–'}"
                  " | "
                  f"{fmt(tg) if tg else '–'} | "
                  f"{fmt(r['decode_tokens_per_second'] / tg) + '×' if tg else '–'} | "
                  f"{fmt(pp) if pp else '–'} | "
                  f"{fmt(r['prefill_tokens_per_second'] / pp) + '×' if pp else '–'} |")
    md.append("")


def executor_steps(step, h, md):
    """step_bench: N sessions decoding alone versus with their rounds batched through the GGUF
    step compute in one process, and llama.cpp's llama-batched-bench on the same file."""
    group = "3c. Batched steps (shared executor's compute)"
    if not step:
        md.append("*Not measured in this run.*")
        return
    rows = step["rows"]
    ones = {r["type"]: r["alone_tokens_per_second"] for r in rows if r["sessions"] == 1}
    for r in rows:
        if r["sessions"] != 16:
            continue
        one = ones.get(r["type"], 0)
        h.add(group, f"16 sessions' decode batched, 110m {r['type']}, {r['threads']} threads, "
              "against one session alone", r["batched_tokens_per_second"], "tok/s",
              "≥ 4× one session", one, "one session alone",
              met=one > 0 and r["batched_tokens_per_second"] >= 4 * one)
        if r["llama_cpp_batched_tokens_per_second"] > 0:
            h.add(group, f"16 sessions' decode batched, 110m {r['type']}, against llama.cpp "
                  "(llama-batched-bench, 16 sequences, same threads)",
                  r["batched_tokens_per_second"], "tok/s", "≥ 1.5× llama.cpp",
                  r["llama_cpp_batched_tokens_per_second"], "llama.cpp speed_tg",
                  met=r["batched_tokens_per_second"]
                  >= 1.5 * r["llama_cpp_batched_tokens_per_second"])
    md.append(f"step_bench: N sessions, each a prompt of {step.get('prompt_tokens', '?')} tokens then "
              f"{step.get('decode_tokens', '?')} decode tokens, on {step.get('threads', '?')} "
              "threads, in one process: *alone*, every session computing its own steps "
              "(ForwardGguf; the sessions spread over the threads as workers over the cores), "
              "and *batched*, every session on a thread of its own with its weight-heavy rounds "
              "meeting the others' in one GgufStepCompute batch (engine/thread_rounds.h) whose "
              "products use the threads. No slots, sandbox or cgroups: this is the compute's "
              "ceiling, without the executor process's round trips (§3d has those). Batched "
              "logits are "
              "checked bit-identical to alone. llama.cpp: llama-batched-bench on the same file, "
              "same threads and lengths, its speed_tg.\n")
    md.append("| type | sessions | alone tok/s | ITL p50/p99 ms | batched tok/s | ITL p50/p99 ms "
              "| batched/alone | llama.cpp tok/s | batched/llama.cpp |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        a, b_ = r["alone_itl_ms"], r["batched_itl_ms"]
        lt = r["llama_cpp_batched_tokens_per_second"]
        md.append(f"| {r['type']} | {r['sessions']} | {fmt(r['alone_tokens_per_second'])} | "
                  f"{fmt(a['p50'])}/{fmt(a['p99'])} | {fmt(r['batched_tokens_per_second'])} | "
                  f"{fmt(b_['p50'])}/{fmt(b_['p99'])} | "
                  f"{fmt(r['batched_tokens_per_second'] / r['alone_tokens_per_second'])}× | "
                  f"{fmt(lt) if lt else '–'} | "
                  f"{fmt(r['batched_tokens_per_second'] / lt) + '×' if lt else '–'} |")
    md.append("")


def executor_sessions(runs, step, h, plots, md):
    """load_bench --gguf TYPE --executor both: N sessions through celld, each worker computing
    its own steps (alone, --shared-executor=false) against the shared executor (shared), and
    llama.cpp's llama-batched-bench that load_bench ran on the same file with the same lengths,
    sequence counts and threads (runs without it fall back to step_bench's, at 16 sessions)."""
    group = "3d. Shared executor through celld"
    llama16 = {r["type"]: r["llama_cpp_batched_tokens_per_second"]
               for r in (step or {}).get("rows", []) if r["sessions"] == 16}
    # A lone session's rate is measured twice in a run (through celld here, in one process by
    # step_bench); on a loaded host one may come out far slower, which would flatter the 16
    # sessions' ratio. The headline divides by the faster of the two.
    step_one = {r["type"]: r["alone_tokens_per_second"]
                for r in (step or {}).get("rows", []) if r["sessions"] == 1}
    md.append("#### Sessions through celld: alone against the shared executor\n")
    runs = [r for r in runs if r]
    if not runs:
        md.append("*Not measured in this run.*")
        return
    md.append("load_bench: N sessions on one celld send the same request at the same moment "
              "(greedy); *alone*: every worker computes its own steps (`celld "
              "--shared-executor=false`); *shared*: celld's default, the workers' weight-heavy "
              "rounds batched in the model's "
              "executor process (its slots, sandbox and cgroup; tokens bit-identical). Default "
              "policy (one CPU per session). Aggregate: every token over the run's wall time, "
              "prefills included; decode: the tokens after every session has its first, over "
              "the time from then to the last token (all sessions decoding, what "
              "llama-batched-bench's speed_tg counts; the headline compares these); medians of "
              "the repetitions. llama.cpp: llama-batched-bench on the same GGUF file, the "
              "sessions' prompt length in tokens, the same decode tokens, N sequences and the "
              "machine's CPUs as threads; its speed_tg beside the shared executor's decode.\n")
    for run in runs:
        model = f"{run['preset']} {run.get('gguf', '')}"
        md.append(f"{model}, {run['tokens']} new tokens per session, {run['repetitions']} "
                  "repetitions:\n")
        llama_here = {x["sessions"]: x["decode_tokens_per_second"]
                      for x in run.get("llama_cpp_batched", [])
                      if x.get("decode_tokens_per_second", 0) > 0}
        md.append("| model | sessions | alone tok/s | decode | ITL p50/p99 ms | shared tok/s | "
                  "decode | ITL p50/p99 ms | shared/alone | llama.cpp decode | shared/llama.cpp |")
        md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        by = {}
        for lv in run["levels"]:
            by.setdefault(lv["sessions"], {})[lv["compute"]] = lv
        rows = []
        # Decode rates (no prefill left; llama-batched-bench's speed_tg counts the same), None
        # where the run has none; the headline then falls back to the aggregate and says so.
        def decode(lv):
            v = (lv or {}).get("decode_tokens_per_second")
            return v if v else None
        has_decode = all(decode(lv) for lv in run["levels"])
        def rate(lv):
            return decode(lv) if has_decode else (lv or {}).get("aggregate_tokens_per_second", 0)
        what = "decode" if has_decode else "aggregate (prefills included)"
        one_alone = max(rate(by.get(1, {}).get("alone", {})) or 0,
                        step_one.get(run.get("gguf", ""), 0))
        for n in sorted(by):
            a, s_ = by[n].get("alone"), by[n].get("shared")
            if not a or not s_:
                continue
            at, st = a["aggregate_tokens_per_second"], s_["aggregate_tokens_per_second"]
            ad, sd = decode(a), decode(s_)
            lt = llama_here.get(n)
            rows.append([n, rate(a), rate(s_), lt if lt else "NaN",
                         a["inter_token_ms"]["p50"], a["inter_token_ms"]["p99"],
                         s_["inter_token_ms"]["p50"], s_["inter_token_ms"]["p99"]])
            md.append(f"| {model} | {n} | {fmt(at)} | {fmt(ad) if ad else '–'} | "
                      f"{fmt(a['inter_token_ms']['p50'])}/{fmt(a['inter_token_ms']['p99'])} | "
                      f"{fmt(st)} | {fmt(sd) if sd else '–'} | "
                      f"{fmt(s_['inter_token_ms']['p50'])}/{fmt(s_['inter_token_ms']['p99'])} | "
                      f"{fmt(st / at) if at else '–'}× | {fmt(lt) if lt else '–'} | "
                      f"{fmt(sd / lt) + '×' if lt and sd else '–'} |")
            if n == 16 and one_alone:
                r16 = rate(s_)
                h.add(group, f"16 sessions through the shared executor, {what}, {model}, "
                      "against one session alone", r16, "tok/s", "≥ 4× one session", one_alone,
                      "one session alone (the faster of celld's and step_bench's)",
                      met=r16 >= 4 * one_alone)
            one_itl99 = by.get(1, {}).get("alone", {}).get("inter_token_ms", {}).get("p99", 0)
            if n == 16 and one_itl99:
                itl99 = s_["inter_token_ms"]["p99"]
                h.add(group, f"inter-token p99, 16 sessions through the shared executor, "
                      f"{model}, against one session alone", itl99, "ms", "≤ 5× one session",
                      one_itl99, "one session alone", met=itl99 <= 5 * one_itl99)
            llama = llama_here.get(16) or llama16.get(run.get("gguf", ""), 0)
            where = ("the same file and lengths, load_bench's run" if llama_here.get(16)
                     else "step_bench's run")
            threads = run.get("llama_cpp_threads", 2) if llama_here.get(16) else 2
            if n == 16 and llama:
                r16 = rate(s_)
                h.add(group, f"16 sessions through the shared executor, {what}, {model}, "
                      f"against llama.cpp (llama-batched-bench, 16 sequences, {threads} threads, "
                      f"{where})",
                      r16, "tok/s", "≥ 1.5× llama.cpp", llama,
                      "llama.cpp speed_tg", met=r16 >= 1.5 * llama)
        name = f"executor_{run.get('gguf', 'model').lower()}"
        data = plots.data(name, ["n", "alone", "shared", "llama_cpp", "alone_itl50",
                                 "alone_itl99", "shared_itl50", "shared_itl99"], rows)
        png = plots.plot(name, f"Sessions through celld, {model}: alone, the shared executor "
                         "and llama.cpp", f"""set logscale x 2
set xlabel "concurrent generating sessions (N)"
set ylabel "{what} tokens/s"
set yrange [0:*]
set key top left
plot "{data}" using 1:2 with linespoints pt 7 lw 2 lc rgb '#7f7f7f' title "alone (each worker computes)", \\
     "" using 1:3 with linespoints pt 5 lw 2 lc rgb '#1f77b4' title "shared executor", \\
     "" using 1:4 with linespoints pt 9 lw 2 lc rgb '#d62728' title "llama.cpp llama-batched-bench (same file)" """)
        if png:
            md.append(f"\n![{model}: {what} tokens/s against N](benchmarks/{png})\n")
        png = plots.plot(name + "_itl", f"Inter-token latency through celld, {model}",
                         f"""set logscale x 2
set logscale y 10
set xlabel "concurrent generating sessions (N)"
set ylabel "inter-token gap (ms)"
set key top left
plot "{data}" using 1:5 with linespoints pt 6 lw 1 dt 2 lc rgb '#7f7f7f' title "alone p50", \\
     "" using 1:6 with linespoints pt 7 lw 2 lc rgb '#7f7f7f' title "alone p99", \\
     "" using 1:7 with linespoints pt 4 lw 1 dt 2 lc rgb '#1f77b4' title "shared p50", \\
     "" using 1:8 with linespoints pt 5 lw 2 lc rgb '#1f77b4' title "shared p99" """)
        if png:
            md.append(f"\n![{model}: inter-token latency against N](benchmarks/{png})\n")
    md.append("")


def gateway_load(gw, h, md):
    """gateway_load_bench: cellgate under many streaming clients, and its cost over celld's
    socket in interleaved rounds."""
    group = "4b. HTTP gateway"
    if not gw:
        md.append("*Not measured in this run.*")
        return
    h.add(group, f"{gw['clients']} streaming clients through the gateway, errors",
          gw["errors"], "errors", "0", met=gw["errors"] == 0)
    h.add(group, f"gateway throughput, {gw['streams']} streams, against celld's socket",
          gw["tps_gateway"], "tok/s", "≥ 0.95× direct", gw["tps_direct"], "direct",
          met=gw["tps_direct"] > 0 and gw["tps_gateway"] / gw["tps_direct"] >= 0.95)
    h.add(group, "gateway time to first token, one stream, added over celld's socket",
          gw["ttft_gateway_ms"] - gw["ttft_direct_ms"], "ms", "≤ 2 ms", gw["ttft_direct_ms"],
          "direct TTFT", ratio=None, met=gw["ttft_gateway_ms"] - gw["ttft_direct_ms"] <= 2)
    md.append(f"gateway_load_bench: preset {gw['preset']}, every request a new session generating "
              f"{gw['tokens']} greedy tokens (`/v1/completions`, streamed). Load: "
              f"{gw['clients']} clients asking back to back, through the gateway and then straight "
              "on celld's socket (as `cellctl`) for scale. Overhead: medians of "
              f"{gw['rounds']} rounds alternating the two paths.\n")
    md.append("| path | requests | errors | tokens/s | TTFT p50 / p99 ms | ITL p50 / p99 ms |")
    md.append("|---|---:|---:|---:|---:|---:|")
    md.append(f"| gateway | {gw['requests']} | {gw['errors']} | {fmt(gw['tokens_per_s'])} | "
              f"{fmt(gw['ttft_ms']['p50'])} / {fmt(gw['ttft_ms']['p99'])} | "
              f"{fmt(gw['itl_ms']['p50'])} / {fmt(gw['itl_ms']['p99'])} |")
    md.append(f"| direct | {gw['direct_requests']} | {gw['direct_errors']} | "
              f"{fmt(gw['direct_tokens_per_s'])} | "
              f"{fmt(gw['direct_ttft_ms']['p50'])} / {fmt(gw['direct_ttft_ms']['p99'])} | "
              f"{fmt(gw['direct_itl_ms']['p50'])} / {fmt(gw['direct_itl_ms']['p99'])} |")
    md.append(f"\nThe gateway used {fmt(gw['gateway_cpu_s'])} CPU-seconds over the "
              f"{fmt(gw['load_seconds'])} s load and peaked at "
              f"{gw['gateway_peak_rss_bytes'] / MIB:.1f} MiB resident.\n")
    md.append(f"| overhead | direct | gateway |")
    md.append("|---|---:|---:|")
    md.append(f"| TTFT, one stream (ms) | {fmt(gw['ttft_direct_ms'])} | {fmt(gw['ttft_gateway_ms'])} |")
    md.append(f"| tokens/s, {gw['streams']} streams | {fmt(gw['tps_direct'])} | "
              f"{fmt(gw['tps_gateway'])} |")
    md.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    markdown = args.markdown or os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                             "benchmarks.md")
    machine = load(args.raw, "machine") or {}
    run = load(args.raw, "run") or {}
    b = {name: load(args.raw, name) for name in
         ["bandwidth", "engine", "gguf", "step", "executor_q8", "executor_q4k", "seccomp", "session_open", "protocol", "load",
          "streaming", "memory", "memory_q8", "gateway"]}
    if b["engine"]:
        for r in b["engine"]["rows"]:
            if r["kind"] == "bandwidth":
                machine["bandwidth_gbps"] = r["bytes_per_second"] / 1e9
    if b["bandwidth"]:
        machine["bandwidth_all_threads_gbps"] = b["bandwidth"]["all_threads_bytes_per_second"] / 1e9
        machine["bandwidth_one_thread_gbps"] = b["bandwidth"]["one_thread_bytes_per_second"] / 1e9
        machine["bandwidth_threads"] = b["bandwidth"]["threads"]
    plots = Plots(args.out, machine_line(machine))
    h = Headline()
    sections = {}
    for key, fn in [("open", lambda md: open_latency(b["session_open"], h, plots, md)),
                    ("memory", lambda md: (memory(b["memory"], h, plots, md),
                                           memory_int8(b["memory_q8"], b["memory"], h, md))),
                    ("generation", lambda md: generation(b["engine"], b["streaming"], b["load"], h, plots, md,
                                                                  machine.get("cpus", 2))),
                    ("gguf", lambda md: gguf_models(b["gguf"], h, md)),
                    ("step", lambda md: (executor_steps(b["step"], h, md),
                                         executor_sessions([b["executor_q8"], b["executor_q4k"]],
                                                           b["step"], h, plots, md))),
                    ("protocol", lambda md: protocol(b["protocol"], b["streaming"], h, md)),
                    ("gateway", lambda md: gateway_load(b["gateway"], h, md)),
                    ("sandbox", lambda md: sandbox_cost(b["seccomp"], b["streaming"], h, md))]:
        md = []
        try:
            fn(md)
        except (KeyError, TypeError, ZeroDivisionError, IndexError) as e:
            md.append(f"*The report could not read this group's results: {type(e).__name__} {e}.*")
            print(f"report: {key}: {type(e).__name__} {e}", file=sys.stderr)
        sections[key] = "\n".join(md)

    results = {"machine": machine, "run": run, "headline": h.rows, "benchmarks": b}
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
        f.write("\n")

    template_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report_template.md")
    with open(template_path, encoding="utf-8") as f:
        template = f.read()
    durations = run.get("durations_s", {})
    duration_lines = "\n".join(f"| {k} | {v:.0f} s |" for k, v in durations.items())
    values = {
        "machine": machine_line(machine),
        "cpu_model": machine.get("cpu_model", "?"),
        "cpus": str(machine.get("cpus", "?")),
        "memory_gib": f"{machine.get('memory_gib', 0):.1f}",
        "kernel": machine.get("kernel", "?"),
        "cgroup": machine.get("cgroup", "?"),
        "bandwidth": f"{machine.get('bandwidth_gbps', 0):.1f}",
        "bandwidth_all": (f"; {machine['bandwidth_threads']} threads reading at once: "
                          f"{machine['bandwidth_all_threads_gbps']:.1f} GB/s in all "
                          f"(bandwidth_bench; one thread "
                          f"{machine['bandwidth_one_thread_gbps']:.1f} GB/s)")
                         if "bandwidth_all_threads_gbps" in machine else "",
        "load_before": machine.get("load_before", "?"),
        "load_after": run.get("load_after", "?"),
        "date": run.get("date", "?"),
        "commit": run.get("commit", "?"),
        "mode": run.get("mode", "?"),
        "command": run.get("command", "bench/run"),
        "total_s": f"{run.get('total_s', 0):.0f}",
        "build_s": f"{run.get('build_s', 0):.0f}",
        "durations": duration_lines,
        "headline": h.markdown(),
        "open": sections["open"],
        "memory": sections["memory"],
        "generation": sections["generation"],
        "gguf": sections["gguf"],
        "step": sections["step"],
        "protocol": sections["protocol"],
        "gateway": sections["gateway"],
        "sandbox": sections["sandbox"],
        "analysis": analysis(b),
    }
    text = template
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    with open(markdown, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"report: wrote {markdown}, {os.path.join(args.out, 'results.json')} and "
          f"{len(plots.made)} plots", file=sys.stderr)


if __name__ == "__main__":
    main()
