"""The edge to OpenStack's own APIs: a Keystone session, Nova's servers, Neutron's ports.

Only reconciliation (:mod:`k2hr3_osnl.reconcile.reconciler`) and verification
(:mod:`k2hr3_osnl.reconcile.verify`) use it, and only when ``[service_credentials] auth_type`` is
set. Every failure surfaces as :class:`~k2hr3_osnl.openstack.session.OpenStackError`,
whose message never holds a password or a token.
"""
