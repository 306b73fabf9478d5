"""Adapters between users' models and samplers and the EDM denoiser protocol of entropic_fast.

``edm`` (NVIDIA EDM / EDM2 networks), ``diffusers`` (VP UNets and their schedulers), ``flow``
(rectified-flow / flow-matching velocity models), ``kdiffusion`` (k-diffusion-style sigma tensors),
``comfyui`` (a ComfyUI MODEL as a denoiser).
Each module imports only what it adapts, and only when used.
"""
