"""The node classes ComfyUI lists: thin V3 schemas whose `execute` calls into a core."""

from .inversion import LatentAdaIN

NODES = [LatentAdaIN]
