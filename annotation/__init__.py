"""annotation: Label Studio round trips -- labeling configs, task export, SDK push/pull. Parsing of
exported files lives with the other formats in helpsteer/formats/label_studio.py."""
