"""The reseller portal (``/portal``): server-rendered pages for a reseller signed in with its token."""
