"""The model Latent Studio ships: a small latent diffusion model trained by this project.

Domain: one flat-coloured shape on a flat background, 128x128 pixels, captioned
"a {colour} {shape} on a {colour} background". No Qt here.
"""
