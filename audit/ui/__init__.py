"""Streamlit-side helpers: typed session state, cached data access, drawing, charts."""
