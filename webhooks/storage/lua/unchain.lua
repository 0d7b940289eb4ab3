-- Take a delivery out of its ordering chain, waking the next when it was the head
-- (chain.lua): before a redeliver begins its new cycle, which takes no place in the
-- order, and after the delivery is deleted.
-- KEYS: delivery_key scheduled_key due_key
-- ARGV: delivery_id now delivery_template attempts_template chain_key
-- Uses: chain
-- chain_key: the chain's key, for a delivery deleted in this same transaction (its
-- record says no more), so that the wake passes over the others deleted with it; ''
-- to read it from the record.
-- Returns: 1.
unchain(delivery_key, delivery_id, now, scheduled_key, due_key, delivery_template,
        attempts_template, chain_key ~= '' and chain_key or nil)
return 1
