#!/usr/bin/env python3
"""Report the shape of C sources: the longest functions and the lines over a width.

    python3 tools/code_shape.py [--top N] [--width W] FILE...

A function is a definition whose body opens with '{' ending a line and closes with '}' in
column 0 (the house style of molora.h and the tools); its length counts the signature too.
"""
import argparse
import re
import sys

SIG = re.compile(r'^[A-Za-z_][\w \*]*?\b([A-Za-z_]\w*)\s*\(')


def functions(path):
    lines = open(path, encoding='utf-8').read().split('\n')
    out, i = [], 0
    while i < len(lines):
        m = SIG.match(lines[i])
        if m and not lines[i].startswith(('typedef', 'struct', 'enum', 'union', '#')) \
                and not lines[i].rstrip().endswith(';'):
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith('{') and ';' not in lines[j]:
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith('{'):
                k = j + 1
                while k < len(lines) and lines[k] != '}':
                    k += 1
                out.append((k - i + 1, m.group(1), path, i + 1))
                i = k + 1
                continue
        i += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--top', type=int, default=15)
    ap.add_argument('--width', type=int, default=120)
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    fns, wide = [], 0
    for f in a.files:
        fns += functions(f)
        wide += sum(1 for ln in open(f, encoding='utf-8') if len(ln.rstrip('\n')) > a.width)
    fns.sort(reverse=True)
    print(f'{len(fns)} functions; the {a.top} longest:')
    for n, name, path, line in fns[:a.top]:
        print(f'  {n:4d}  {name}  ({path}:{line})')
    print(f'lines over {a.width} characters: {wide}')


if __name__ == '__main__':
    sys.exit(main())
