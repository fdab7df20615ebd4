# Rewrites a .cu file for the host emulation (emu.h): kernel launches `k<<<grid, block, ...>>>(args)` become
# `emu_kernel(grid, block)([&] { k(args); })`, block-scope `__shared__ T x[n];` a static (one per block,
# blocks run in turn), `extern __shared__ T x[];` a pointer into emu_dyn_smem.
import re, sys
src = open(sys.argv[1]).read()
out, i = [], 0
# (a launch may break the line between the kernel's name and its <<<)
pat = re.compile(r'([A-Za-z_][\w:]*(?:<[^;{}]*?>)?)\s*<<<(.*?)>>>\(', re.S)
while True:
    m = pat.search(src, i)
    if not m:
        out.append(src[i:]); break
    out.append(src[i:m.start()])
    depth, j = 1, m.end()
    while depth:
        depth += {'(': 1, ')': -1}.get(src[j], 0); j += 1
    args = src[m.end():j - 1]
    cfg = [a.strip() for a in re.split(r',(?![^()]*\))', m.group(2))]
    out.append(f'emu_kernel({cfg[0]}, {cfg[1]})([&] {{ {m.group(1)}({args}); }})')
    i = j
s = ''.join(out)
s = re.sub(r'extern __shared__ (?:__align__\(\d+\) )?([\w ]+?) (\w+)\[\];', r'\1* \2 = reinterpret_cast<\1*>(emu_dyn_smem);', s)
s = re.sub(r'(?<!extern )__shared__ ([\w ]+? \w+(?:\[[^\]]+\])+;)', r'static \1', s)
open(sys.argv[2], 'w').write(s)
