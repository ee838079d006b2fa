"""Customer segmentation of an online store's sales history (RFM, clustering, tracked in MLflow)."""
