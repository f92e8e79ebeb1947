"""streamret.service"""
