"""Development tools, for the demo, the tests and the benchmarks (never production):
an embedded Redis (:mod:`.redis_server`), real worker processes (:mod:`.worker`), a
forward proxy on loopback (:mod:`.forward_proxy`, tinyproxy) and bulk seeding of waiting
deliveries (:mod:`.seed`)."""
