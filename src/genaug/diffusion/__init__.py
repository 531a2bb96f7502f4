"""Diffusion-model plumbing shared by generation and SDI: model references (``pocket:``
names, hub ids, folders; :mod:`genaug.diffusion.models`), the pipeline architecture checks
(:mod:`genaug.diffusion.architecture`), a frozen pipeline's parts (:mod:`genaug.diffusion.frozen`),
text conditioning with a slot word (:mod:`genaug.diffusion.conditioning`), latent and context
caches (:mod:`genaug.diffusion.cache`) and the denoising loss on cached latents
(:mod:`genaug.diffusion.loss`).

Importing this package imports no torch (the modules that need it import it themselves).
"""
