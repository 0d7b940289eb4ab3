-- Take a delivery out of its ordering chain, waking the next when it was the head
-- (chain.lua): before a redeliver begins its new cycle, which takes no place in the
-- order, and before the delivery is deleted.
-- KEYS: delivery_key scheduled_key due_key
-- ARGV: delivery_id now delivery_template attempts_template
-- Uses: chain
-- Returns: 1.
unchain(delivery_key, delivery_id, now, scheduled_key, due_key, delivery_template,
        attempts_template)
return 1
