"""What streamrec knows of items beyond their ids: catalog records (title, category, brand, price,
availability), the rules built on them, and content vectors for items nobody has interacted with yet."""

__all__ = ["checks", "item", "rules", "store"]
