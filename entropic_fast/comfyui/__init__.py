"""ComfyUI nodes over the public API (DESIGN.md: thin). Install: link or copy this folder into ComfyUI's
``custom_nodes/`` with entropic_fast installed in ComfyUI's Python, e.g.
``ln -s "$(python -c 'import entropic_fast.comfyui as m, os; print(os.path.dirname(m.__file__))')" ComfyUI/custom_nodes/entropic_fast``.

``EntropicScheduler``: a saved profile, steps, kind and denoise -> ``SIGMAS`` for ComfyUI's custom
samplers (SamplerCustom), like its ``BasicScheduler``. For flow models (ComfyUI's ``CONST`` model
sampling) the sigmas are returned as flow times ``t = s / (1 + s)``, ComfyUI's convention there.

``EntropicProfile``: a MODEL, a LATENT batch and an optional CONDITIONING -> a profile file in
ComfyUI's output folder (checkpointed: a cancelled run resumes), with ComfyUI's progress bar.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
