"""Make PyPI's torchvision importable beside the CPU-only torch build.

PyPI torchvision's compiled part links against CUDA torch, fails to load, and the import then dies
registering fake kernels for `torchvision::nms` / `::qnms` ("operator torchvision::nms does not
exist"). Guarding those two decorators (the fix of pytorch/vision PR 9086) leaves pure-Python
torchvision working, which is all ComfyUI needs. Idempotent.
"""

import pathlib
import re
import sys

site = pathlib.Path(sys.argv[1])
path = site / "torchvision" / "_meta_registrations.py"
source = path.read_text()
patched, count = re.subn(
    r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$',
    r'@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda fn: fn))',
    source,
    flags=re.M,
)
if count:
    path.write_text(patched)
print(f"devhost: patched {count} torchvision decorator(s)")
