"""The counters of a `perf stat -x, -o FILE` output, by event name (a tracepoint by its last
part: `sys_enter_writev`); events perf could not count are left out."""


def perf_counts(path):
    counts = {}
    for line in open(path):
        fields = line.strip().split(",")
        if line.startswith("#") or len(fields) < 3 or not fields[0]:
            continue
        try:
            counts[fields[2].split(":")[-1]] = float(fields[0])
        except ValueError:
            pass
    return counts
