"""streamret.engine"""
