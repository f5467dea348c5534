#!/usr/bin/env python3
"""Import circles between the files of each crate: file A uses file B when A names
`crate::b::...` (or `super::b` resolved); prints every strongly connected set of more than one
file (none: prints nothing and exits 0). Usage: scripts/import-cycles.py [crates/*]"""
import os, re, sys

def modules(src):
    """module path (tuple) -> file"""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(root, f)
            rel = os.path.relpath(p, src)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            out[tuple(rel)] = p
    return out

def strip_tests(text):
    """The file without its inline test module (tests may use anything) and comments."""
    m = re.search(r'#\[cfg\(test\)\]\s*mod \w+ \{', text)
    if m:
        text = text[:m.start()]
    return '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('//'))

def deps(mods, path, key):
    text = strip_tests(open(path).read())
    found = set()
    for m in re.finditer(r'\b(crate|super)((?:::\w+)+)', text):
        parts = m.group(2).strip(':').split('::')
        base = [] if m.group(1) == 'crate' else list(key[:-1]) if not path.endswith('mod.rs') else list(key)
        if m.group(1) == 'super' and path.endswith('mod.rs'):
            base = list(key[:-1])
        cand = base + parts
        # the longest prefix that is a module file
        for n in range(len(cand), 0, -1):
            if tuple(cand[:n]) in mods and tuple(cand[:n]) != key:
                found.add(tuple(cand[:n]))
                break
    # `use self::x` / `mod x` children are not imports
    return found

def sccs(graph):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            out.append(comp)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out

bad = 0
for crate in (sys.argv[1:] or sorted(os.path.join('crates', c) for c in os.listdir('crates'))):
    src = os.path.join(crate, 'src')
    mods = modules(src)
    graph = {k: deps(mods, p, k) for k, p in mods.items()}
    # a parent module file that only declares children is not an import of them
    for comp in sccs(graph):
        if len(comp) > 1:
            bad += 1
            print(crate + ': ' + ' <-> '.join('::'.join(c) or 'lib' for c in sorted(comp)))
sys.exit(1 if bad else 0)
