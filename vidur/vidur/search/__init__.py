"""`vidur search`: the capacity and cost of every deployment in a space, in parallel, cached."""
