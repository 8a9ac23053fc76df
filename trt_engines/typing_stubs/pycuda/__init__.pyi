# Local type stubs for the small part of pycuda that trt_engines uses (pycuda ships no stubs).
# Signatures follow pycuda's documentation (pycuda.driver); only what the runtime and build code call.
