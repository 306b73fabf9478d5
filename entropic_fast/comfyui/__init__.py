"""ComfyUI nodes over the public API (thin). Install with entropic_fast installed in ComfyUI's Python: clone
this repository into ComfyUI's ``custom_nodes/`` (its top-level ``__init__.py`` exports these mappings; ComfyUI
Manager installs it from ``requirements.txt``), or link this folder there.

``EntropicScheduler``: a saved profile, steps, kind and denoise -> ``SIGMAS`` for ComfyUI's custom
samplers (SamplerCustom), like its ``BasicScheduler``. For flow models (ComfyUI's ``CONST`` model
sampling) the sigmas are returned as flow times ``t = s / (1 + s)``, ComfyUI's convention there.

``EntropicProfile``: a MODEL, a LATENT batch and a CONDITIONING -> a profile file in
ComfyUI's output folder (checkpointed: a cancelled run resumes), with ComfyUI's progress bar; the file
records the model's type and range, and EntropicScheduler refuses a profile of another kind of model.
``entropic`` in KSampler's scheduler list: rescaled entropic time from the newest EntropicProfile output of a
model of the same type (ComfyUI's ``normal`` and a warning while there is none).
"""
# absolute: ComfyUI loads this file as a top-level module named after its folder's path
from entropic_fast.comfyui.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
from entropic_fast.comfyui.nodes import register_ksampler_scheduler

register_ksampler_scheduler()
