"""Third-party pretrained networks that losses and metrics use (LPIPS backbones, the FID Inception, the
discriminator's DINO backbone): where their weight files are looked for and how they are read safely."""
