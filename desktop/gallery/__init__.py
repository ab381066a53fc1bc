"""The local gallery: PNG files (the truth) with their metadata. No Qt here."""
