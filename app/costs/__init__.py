"""Cloud cost lines: the GCP billing export, FOCUS files, and list-price estimates."""
