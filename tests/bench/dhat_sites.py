"""The allocation sites of a DHAT profile (valgrind --tool=dhat) that hold about one block per
player at the heap's peak: bytes per player, average block size, and the innermost frames of
streamgate, actix and tokio that name the site.

    python3 tests/bench/dhat_sites.py dhat.out PLAYERS
"""
import json
import sys

path, players = sys.argv[1], int(sys.argv[2])
profile = json.load(open(path))
frames = profile["ftbl"]
rows = []
for site in profile["pps"]:
    blocks = site["gbk"]
    if not players * 0.98 <= blocks <= players * 1.02:
        continue
    names = [frames[i].split(": ", 1)[-1] for i in site["fs"]]
    named = [n for n in names if any(k in n for k in ("streamgate", "actix", "tokio"))][:3]
    rows.append((site["gb"] / players, site["gb"] / blocks, " <- ".join(n[:100] for n in named)))
rows.sort(key=lambda r: -r[0])
print(f"{'bytes/player':>12} {'block':>6}  site")
for per, block, name in rows:
    print(f"{per:12.0f} {block:6.0f}  {name}")
print(f"{sum(r[0] for r in rows):12.0f}         all of them")
