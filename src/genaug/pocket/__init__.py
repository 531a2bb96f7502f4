"""The pocket world: styled 16x16 digits and the tiny CLIP / SD / InstructPix2Pix genaug trains on them."""
