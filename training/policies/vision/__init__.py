"""Camera encoders shared by the policies: a torchvision-compatible ResNet-18, a small CNN for CPU-scale work,
spatial-softmax keypoints (Diffusion Policy), feature-map tokens with 2-D sinusoidal positions (ACT), crops."""
