"""The canonical transaction table every stage after loading works on.

The loader maps a store's own column names onto these roles (``src.data.columns``: recognised
names, or ``data.columns.<role>`` in ``conf/data/*.yaml``).
"""

CUSTOMER_ID = "customer_id"  # stripped str; <NA> when empty or a placeholder (data.missing_ids)
DATE = "date"  # datetime64[ns], naive, in one zone (data.timezone); NaT when unreadable
AMOUNT = "amount"  # float64 rubles for the line (negative for returns); NaN when unparseable
ORDER_ID = "order_id"  # str; when the export has none (or it is blank): one per customer per day
SALE_ID = "sale_id"  # str, optional
QUANTITY = "quantity"  # float64, optional
PRODUCT_ID = "product_id"  # str, optional (1C: StockCode)
SITE_ID = "site_id"  # str, optional
ADDRESS = "address"  # str, optional

REQUIRED = (CUSTOMER_ID, DATE, AMOUNT)
OPTIONAL = (ORDER_ID, SALE_ID, QUANTITY, PRODUCT_ID, SITE_ID, ADDRESS)
CANONICAL = REQUIRED + OPTIONAL

# Per-customer feature table (index: customer_id)
RECENCY = "recency"  # days from the last purchase to the snapshot date
FREQUENCY = "frequency"  # distinct orders
MONETARY = "monetary"  # total spend, rubles
RFM = (RECENCY, FREQUENCY, MONETARY)
