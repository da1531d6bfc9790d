"""The node classes ComfyUI lists: thin V3 schemas whose `execute` calls into a core."""

from .inst_conditioning import ExportEmbedding, StyleConditioning
from .inst_files import ImportOfficialStyle, LoadStyle, SaveStyle
from .inst_inversion import InversionNoise, LatentAdaIN, StyleTransfer
from .inst_training import InSTOptions, TrainStyle
from .styleforge_data import StyleForgeImageSet
from .styleforge_files import SaveStyleForgeLoRA
from .styleforge_training import StyleForgeOptions, TrainMultiStyleForge, TrainStyleForge
from .training_validation import TrainingValidation

NODES = [TrainStyle, InSTOptions, LoadStyle, SaveStyle, ImportOfficialStyle, StyleConditioning, ExportEmbedding,
         InversionNoise, StyleTransfer, LatentAdaIN]
NODES += [StyleForgeImageSet, TrainStyleForge, TrainMultiStyleForge, StyleForgeOptions, SaveStyleForgeLoRA,
          TrainingValidation]
