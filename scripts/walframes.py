#!/usr/bin/env python3
"""Which tables and indexes a copy of SQLite's WAL holds frames of, per commit.

    scripts/walframes.py COPY_OF_WAL COPY_OF_DB

Copy the live `callgate.db-wal` first, then `callgate.db`, while the server is under load
(e.g. a bench run with `--keep --work-dir DIR`): every frame of the log's current generation
(its salts match the header's) is counted by the table or index its page belongs to in the
database copy (`dbstat`; a page the copy does not have yet shows as `new?`, usually a table's
tail). docs/benchmarks.md, "Nineteenth round", used it to find the pages status changes dirty.
"""
import collections
import sqlite3
import struct
import sys
if len(sys.argv) != 3:
    sys.exit(__doc__)
wal, db = sys.argv[1], sys.argv[2]
c = sqlite3.connect(f'file:{db}?mode=ro&immutable=1', uri=True)
owner = {p: n for n, p in c.execute('select name, pageno from dbstat')}
data = open(wal, 'rb').read()
magic, ver, psz, ckpt, s1, s2, c1, c2 = struct.unpack('>IIIIIIII', data[:32])
fs = 24 + psz
n = (len(data) - 32) // fs
salt = (s1, s2)
frames = []
for i in range(n):
    off = 32 + i * fs
    pg, commit, fs1, fs2 = struct.unpack('>IIII', data[off:off+16])
    if (fs1, fs2) != salt: break
    frames.append((pg, commit))
print('frames', len(frames), 'pagesize', psz)
commits = [i for i, (p, c_) in enumerate(frames) if c_]
print('commits', len(commits), 'frames/commit', len(frames)/max(1,len(commits)))
by = collections.Counter(owner.get(p, 'new?') for p, _ in frames)
for k, v in by.most_common(12): print(f'{k:30} {v:7} {v/len(frames):.1%}')
# distinct pages per commit by table
start = 0; per = collections.Counter(); dist = collections.Counter()
for ci in commits:
    seg = frames[start:ci+1]; start = ci + 1
    for p, _ in seg: per[owner.get(p,'new?')] += 1
    for p in set(p for p,_ in seg): dist[owner.get(p,'new?')] += 1
print('distinct per commit (avg):', {k: round(v/len(commits),1) for k, v in dist.most_common(8)})
