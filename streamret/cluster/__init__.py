"""streamret.cluster"""
