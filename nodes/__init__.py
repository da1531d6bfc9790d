"""The node classes ComfyUI lists: thin V3 schemas whose `execute` calls into a core."""

from .inversion import InversionNoise, LatentAdaIN, StyleTransfer
from .style_conditioning import ExportEmbedding, StyleConditioning
from .style_files import ImportOfficialStyle, LoadStyle, SaveStyle
from .style_training import TrainStyle
from .styleforge_data import StyleForgeImageSet
from .styleforge_files import SaveStyleForgeLoRA
from .styleforge_training import TrainStyleForge

NODES = [TrainStyle, LoadStyle, SaveStyle, ImportOfficialStyle, StyleConditioning, ExportEmbedding, InversionNoise,
         StyleTransfer, LatentAdaIN]
NODES += [StyleForgeImageSet, TrainStyleForge, SaveStyleForgeLoRA]
