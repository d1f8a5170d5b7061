"""What predicts: the image and text network families, Kiln's custom layers, and the closed-form linear fits."""
