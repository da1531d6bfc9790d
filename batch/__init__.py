"""Many styles at once: a manifest of InST styles and StyleForge LoRAs trained by a pool of workers on
Ray (one per GPU, or CPU workers), each loading the models once through ComfyUI's own loaders and
training with the same cores the nodes call. Outside ComfyUI's server; the nodes never import it,
and `ray` is needed only here (`pip install ray`)."""
