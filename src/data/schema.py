"""The canonical transaction table every stage after loading works on.

Loaders map a store's own column names onto these (see ``conf/data/*.yaml``, key ``columns``).
"""

CUSTOMER_ID = "customer_id"  # str; <NA> when the export has none (cleaning drops those rows)
DATE = "date"  # datetime64[ns], naive local time; NaT when unparseable
AMOUNT = "amount"  # float64 rubles for the line (negative for returns); NaN when unparseable
ORDER_ID = "order_id"  # str; fallback when the export has none: one order per customer per day
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
