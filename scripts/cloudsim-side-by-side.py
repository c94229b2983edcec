#!/usr/bin/env python3
"""Times `keel sim` against CloudSim 3.0.3 side by side on this machine.

For each PlanetLab day: builds CloudSim 3.0.3 from a checkout of its
`cloudsim-3.0.3` tag with javac against Debian's commons-math3
(`apt-get install libcommons-math3-java`), records the day's
`File.listFiles()` order (the order CloudSim's PlanetLabHelper gives VMs
their files) so Keel replays the very same VM order, then runs the policy
with each program, alternating which goes first, RUNS times. Prints every
run (wall s, CPU s, peak RSS MB, the figures each program printed), whether
the figures are identical at CloudSim's printed precision, and per day the
median wall and CPU times and the ratio keel/CloudSim.

    git clone https://github.com/Cloudslab/cloudsim ~/cloudsim
    git -C ~/cloudsim checkout cloudsim-3.0.3
    nice -n 10 cargo build --release -p keel-cli
    scripts/cloudsim-side-by-side.py --cloudsim ~/cloudsim \\
        --planetlab ../shared/traces/planetlab --day 20110303 --day 20110306 --runs 3

Times come from the kernel (wait4: wall clock around the child, user+system
CPU of the child and its threads, ru_maxrss). No CloudSim code is here:
scripts/cloudsim/QuietPlanetLabRun.java is Keel's driver of CloudSim's own
PlanetLabRunner (Log disabled during the run, as PlanetLabRunner does when
output is off; afterwards CloudSim's Helper.printResults prints the figures).
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMMONS_MATH = Path("/usr/share/java/commons-math3.jar")

# CloudSim's printed lines (Helper.printResults) and their keys.
CLOUDSIM_LINES = {
    "energy_kwh": r"Energy consumption: ([\d.]+) kWh",
    "migrations": r"Number of VM migrations: (\d+)",
    "slav_pct": r"SLA: ([\d.]+)%",
    "pdm_pct": r"SLA perf degradation due to migration: ([\d.]+)%",
    "slatah_pct": r"SLA time per active host: ([\d.]+)%",
    "overall_sla_pct": r"Overall SLA violation: ([\d.]+)%",
    "average_sla_pct": r"Average SLA violation: ([\d.]+)%",
    "host_shutdowns": r"Number of host shutdowns: (\d+)",
}
FIGURES = list(CLOUDSIM_LINES)


def fail(message):
    print(f"cloudsim-side-by-side: {message}", file=sys.stderr)
    sys.exit(1)


def timed(command, stdout_path):
    """Runs `command`, stdout to a file; returns (wall s, CPU s, peak RSS MB, exit code)."""
    with open(stdout_path, "wb") as out:
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE)
        # Drain stderr first so a chatty child cannot block on a full pipe.
        stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace"))
        fail(f"{command[0]} exited with {child.returncode}: {' '.join(map(str, command))}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def build_cloudsim(checkout, build_dir):
    """Compiles CloudSim 3.0.3 (core and examples) and Keel's driver; returns the classpath."""
    sources = [checkout / "modules/cloudsim/src/main/java",
               checkout / "modules/cloudsim-examples/src/main/java"]
    for folder in sources:
        if not folder.is_dir():
            fail(f"{checkout} is not a CloudSim checkout: {folder} is missing")
    if not COMMONS_MATH.is_file():
        fail(f"{COMMONS_MATH} is missing: apt-get install libcommons-math3-java")
    classes = build_dir / "classes"
    stamp = classes / ".built"
    if not stamp.is_file():
        classes.mkdir(parents=True, exist_ok=True)
        files = [str(p) for folder in sources for p in sorted(folder.rglob("*.java"))]
        listing = build_dir / "sources.txt"
        listing.write_text("\n".join(files) + "\n")
        print(f"compiling {len(files)} CloudSim sources with javac ...", file=sys.stderr)
        subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-d", str(classes),
                        "-cp", str(COMMONS_MATH), f"@{listing}"], check=True)
        stamp.write_text("ok\n")
    driver = build_dir / "driver"
    driver.mkdir(exist_ok=True)
    subprocess.run(["javac", "-nowarn", "-d", str(driver), "-cp", f"{classes}:{COMMONS_MATH}",
                    str(HERE / "cloudsim/QuietPlanetLabRun.java"),
                    str(HERE / "cloudsim/ListFiles.java")], check=True)
    return f"{driver}:{classes}:{COMMONS_MATH}"


def cloudsim_figures(text):
    figures = {}
    for key, pattern in CLOUDSIM_LINES.items():
        match = re.search(pattern, text)
        if not match:
            fail(f"CloudSim printed no line matching {pattern!r}")
        figures[key] = match.group(1)
    return figures


def keel_figures(text):
    """Keel's JSON figures at the precision CloudSim prints them."""
    r = json.loads(text.strip().splitlines()[-1])
    return {
        "energy_kwh": f"{r['energy_kwh']:.2f}",
        "migrations": str(r["migrations"]),
        "slav_pct": f"{r['slav'] * 100:.5f}",
        "pdm_pct": f"{r['pdm'] * 100:.2f}",
        "slatah_pct": f"{r['slatah'] * 100:.2f}",
        "overall_sla_pct": f"{r['overall_sla_violation'] * 100:.2f}",
        "average_sla_pct": f"{r['average_sla_violation'] * 100:.2f}",
        "host_shutdowns": str(r["host_shutdowns"]),
    }


def git_describe(checkout):
    try:
        out = subprocess.run(["git", "-C", str(checkout), "describe", "--tags", "--always"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def commons_math_version():
    """The Debian package version of commons-math3, if dpkg knows it."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libcommons-math3-java"],
                             capture_output=True, text=True, check=True)
        return f"libcommons-math3-java {out.stdout.strip()}"
    except (OSError, subprocess.CalledProcessError):
        return str(COMMONS_MATH)


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                       if l.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kib = 0
    return f"{os.cpu_count()} cores, {model}, {mem_kib / 1048576:.0f} GiB, {platform.system()} {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloudsim", required=True, type=Path, help="checkout of CloudSim's cloudsim-3.0.3 tag")
    parser.add_argument("--planetlab", type=Path, default=REPO.parent / "shared/traces/planetlab",
                        help="folder of PlanetLab day folders (default ../shared/traces/planetlab)")
    parser.add_argument("--day", action="append", help="day folder name (repeatable; default 20110303)")
    parser.add_argument("--policy", default="lr-mmt-1.2", help="DETECTOR-SELECTOR-PARAMETER (default lr-mmt-1.2)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each program per day (default 3)")
    parser.add_argument("--keel", type=Path, default=REPO / "target/release/keel", help="keel binary (release build)")
    parser.add_argument("--build-dir", type=Path, default=Path(tempfile.gettempdir()) / "keel-cloudsim-3.0.3-build")
    args = parser.parse_args()
    days = args.day or ["20110303"]
    detector, selector, parameter = args.policy.split("-")
    if not args.keel.is_file():
        fail(f"no keel binary at {args.keel}: nice -n 10 cargo build --release -p keel-cli")
    if shutil.which("java") is None or shutil.which("javac") is None:
        fail("java and javac are needed (apt-get install openjdk-17-jdk-headless)")
    args.build_dir.mkdir(parents=True, exist_ok=True)
    classpath = build_cloudsim(args.cloudsim, args.build_dir)
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}")
    print(f"CloudSim: {args.cloudsim} ({git_describe(args.cloudsim)}), {java}, default JVM options, "
          f"{commons_math_version()}")
    print(f"Keel: {args.keel}; policy {args.policy}; VM order: CloudSim's File.listFiles() on this machine")
    print()
    header = ["day", "run", "program", "wall s", "CPU s", "peak RSS MB"] + FIGURES
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    summary = []
    scratch = args.build_dir / "runs"
    scratch.mkdir(exist_ok=True)
    for day in days:
        folder = args.planetlab / day
        if not folder.is_dir():
            fail(f"no day folder {folder}")
        listing = scratch / f"{day}.txt"
        with open(listing, "w") as out:
            subprocess.run(["java", "-cp", classpath, "ListFiles", str(folder)], stdout=out, check=True)
        commands = {
            "CloudSim": ["java", "-cp", classpath, "QuietPlanetLabRun", str(args.planetlab), day,
                         detector, selector, parameter],
            "Keel": [str(args.keel), "sim", "--trace", str(folder), "--order", str(listing),
                     "--policy", args.policy, "--format", "json", "--jobs", "1"],
        }
        times = {"CloudSim": [], "Keel": []}
        identical = True
        for run in range(1, args.runs + 1):
            order = ["CloudSim", "Keel"] if run % 2 else ["Keel", "CloudSim"]
            printed = {}
            for program in order:
                out_path = scratch / f"{day}-{program}-{run}.out"
                wall, cpu, rss = timed(commands[program], out_path)
                text = out_path.read_text()
                figures = cloudsim_figures(text) if program == "CloudSim" else keel_figures(text)
                printed[program] = figures
                times[program].append((wall, cpu, rss))
                print(f"| {day} | {run} | {program} | {wall:.2f} | {cpu:.2f} | {rss:.1f} | "
                      + " | ".join(figures[k] for k in FIGURES) + " |", flush=True)
            identical &= printed["CloudSim"] == printed["Keel"]
        summary.append((day, times, identical))
    print()
    print("| day | runs | CloudSim wall s (median) | Keel wall s (median) | keel/CloudSim wall | "
          "CloudSim CPU s | Keel CPU s | keel/CloudSim CPU | CloudSim peak RSS MB | Keel peak RSS MB | figures identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for day, times, identical in summary:
        med = {p: [statistics.median(t[i] for t in times[p]) for i in range(3)] for p in times}
        peak = {p: max(t[2] for t in times[p]) for p in times}
        print(f"| {day} | {len(times['Keel'])} | {med['CloudSim'][0]:.2f} | {med['Keel'][0]:.3f} | "
              f"{med['Keel'][0] / med['CloudSim'][0]:.4f} | {med['CloudSim'][1]:.2f} | {med['Keel'][1]:.3f} | "
              f"{med['Keel'][1] / med['CloudSim'][1]:.4f} | {peak['CloudSim']:.0f} | {peak['Keel']:.1f} | "
              f"{'yes' if identical else 'NO'} |")


if __name__ == "__main__":
    main()
